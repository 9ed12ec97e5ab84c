/* A compiled COPY text formatter (etl/load/copytext.py): same text as the Python formatters,
 * which stay the reference; tests compare the two on random rows.
 *
 * format_rows(rows, kinds, dumps) -> bytes
 *   rows   a list of tuples, one per row, in the table's column order
 *   kinds  a tuple of column kinds: TEXT, INT, BOOL, TIME or JSON, plus NOT_NULL when the
 *          column may not hold None
 *   dumps  the JSON encoder for JSON columns: returns str or UTF-8 bytes
 * One line per row, columns tab-separated, NULL as \N, backslash, tab, newline and carriage
 * return escaped as \\, \t, \n and \r (PostgreSQL's COPY text format).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <string.h>

enum { K_TEXT = 0, K_INT = 1, K_BOOL = 2, K_TIME = 3, K_JSON = 4, NOT_NULL = 8 };

typedef struct {
    char *data;
    Py_ssize_t size, capacity;
} buffer;

static int
reserve(buffer *b, Py_ssize_t more)
{
    if (b->size + more <= b->capacity)
        return 0;
    Py_ssize_t capacity = b->capacity ? b->capacity : 4096;
    while (capacity < b->size + more) {
        if (capacity > PY_SSIZE_T_MAX / 2) {
            PyErr_NoMemory();
            return -1;
        }
        capacity *= 2;
    }
    char *data = PyMem_Realloc(b->data, (size_t)capacity);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->capacity = capacity;
    return 0;
}

static int
put(buffer *b, const char *s, Py_ssize_t n)
{
    if (reserve(b, n) < 0)
        return -1;
    memcpy(b->data + b->size, s, (size_t)n);
    b->size += n;
    return 0;
}

static int
put_escaped(buffer *b, const char *s, Py_ssize_t n)
{
    /* Worst case doubles every byte; most values need no escape at all. */
    if (reserve(b, 2 * n) < 0)
        return -1;
    char *out = b->data + b->size;
    for (Py_ssize_t i = 0; i < n; i++) {
        char c = s[i];
        switch (c) {
        case '\\': *out++ = '\\'; *out++ = '\\'; break;
        case '\t': *out++ = '\\'; *out++ = 't'; break;
        case '\n': *out++ = '\\'; *out++ = 'n'; break;
        case '\r': *out++ = '\\'; *out++ = 'r'; break;
        default: *out++ = c;
        }
    }
    b->size = out - b->data;
    return 0;
}

static int
put_text(buffer *b, PyObject *value)
{
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(value, &n);
    return s == NULL ? -1 : put_escaped(b, s, n);
}

static int
put_str_of(buffer *b, PyObject *value, int escaped)
{
    PyObject *text = PyObject_Str(value);
    if (text == NULL)
        return -1;
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(text, &n);
    int r = s == NULL ? -1 : (escaped ? put_escaped(b, s, n) : put(b, s, n));
    Py_DECREF(text);
    return r;
}

static int
put_int(buffer *b, PyObject *value)
{
    if (PyLong_CheckExact(value)) {
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow == 0 && !(v == -1 && PyErr_Occurred())) {
            char digits[24];
            int n = snprintf(digits, sizeof digits, "%lld", v);
            return put(b, digits, n);
        }
        PyErr_Clear();
    }
    return put_str_of(b, value, 0); /* as str() writes it, like the Python formatter */
}

static int
put_time(buffer *b, PyObject *value)
{
    /* isoformat() of an aware UTC datetime: the common case, written here; anything else
     * (another offset, a naive or non-datetime value) is written by its own isoformat(). */
    if (PyDateTime_CheckExact(value) && PyDateTime_DATE_GET_TZINFO(value) == PyDateTime_TimeZone_UTC) {
        char text[40];
        int n;
        int us = PyDateTime_DATE_GET_MICROSECOND(value);
        if (us)
            n = snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%06d+00:00",
                         PyDateTime_GET_YEAR(value), PyDateTime_GET_MONTH(value),
                         PyDateTime_GET_DAY(value), PyDateTime_DATE_GET_HOUR(value),
                         PyDateTime_DATE_GET_MINUTE(value), PyDateTime_DATE_GET_SECOND(value), us);
        else
            n = snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d+00:00",
                         PyDateTime_GET_YEAR(value), PyDateTime_GET_MONTH(value),
                         PyDateTime_GET_DAY(value), PyDateTime_DATE_GET_HOUR(value),
                         PyDateTime_DATE_GET_MINUTE(value), PyDateTime_DATE_GET_SECOND(value));
        return put(b, text, n);
    }
    PyObject *text = PyObject_CallMethod(value, "isoformat", NULL);
    if (text == NULL)
        return -1;
    int r = PyUnicode_Check(text) ? put_text(b, text) : put_str_of(b, text, 1);
    Py_DECREF(text);
    return r;
}

static int
put_json(buffer *b, PyObject *value, PyObject *dumps)
{
    PyObject *text = PyObject_CallOneArg(dumps, value);
    if (text == NULL)
        return -1;
    int r;
    if (PyBytes_Check(text))
        r = put_escaped(b, PyBytes_AS_STRING(text), PyBytes_GET_SIZE(text));
    else if (PyUnicode_Check(text))
        r = put_text(b, text);
    else {
        PyErr_SetString(PyExc_TypeError, "the JSON encoder must return str or bytes");
        r = -1;
    }
    Py_DECREF(text);
    return r;
}

static int
put_value(buffer *b, PyObject *value, long kind, PyObject *dumps)
{
    if (value == Py_None) {
        if (kind & NOT_NULL) {
            PyErr_SetString(PyExc_TypeError, "None in a column that may not be null");
            return -1;
        }
        return put(b, "\\N", 2);
    }
    switch (kind & ~NOT_NULL) {
    case K_TEXT:
        if (!PyUnicode_Check(value)) {
            PyErr_Format(PyExc_TypeError, "a text column holds %.100s", Py_TYPE(value)->tp_name);
            return -1;
        }
        return put_text(b, value);
    case K_INT:
        return put_int(b, value);
    case K_BOOL: {
        int truth = PyObject_IsTrue(value);
        return truth < 0 ? -1 : put(b, truth ? "t" : "f", 1);
    }
    case K_TIME:
        return put_time(b, value);
    case K_JSON:
        return put_json(b, value, dumps);
    default:
        PyErr_Format(PyExc_ValueError, "unknown column kind %ld", kind);
        return -1;
    }
}

static PyObject *
format_rows(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyList_Check(args[0]) || !PyTuple_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "format_rows(rows: list, kinds: tuple, dumps)");
        return NULL;
    }
    PyObject *rows = args[0], *kinds_tuple = args[1], *dumps = args[2];
    Py_ssize_t width = PyTuple_GET_SIZE(kinds_tuple);
    long kinds[64];
    if (width == 0 || width > 64) {
        PyErr_SetString(PyExc_ValueError, "a table has 1 to 64 columns");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < width; i++) {
        kinds[i] = PyLong_AsLong(PyTuple_GET_ITEM(kinds_tuple, i));
        if (kinds[i] == -1 && PyErr_Occurred())
            return NULL;
    }
    buffer b = {NULL, 0, 0};
    /* Rows are held while formatted: a JSON encoder runs Python code. */
    for (Py_ssize_t r = 0; r < PyList_GET_SIZE(rows); r++) {
        PyObject *row = PyList_GET_ITEM(rows, r);
        Py_INCREF(row);
        int failed = 0;
        if (!PyTuple_Check(row) || PyTuple_GET_SIZE(row) != width) {
            PyErr_Format(PyExc_ValueError, "row %zd is not a tuple of %zd values", r, width);
            failed = 1;
        }
        for (Py_ssize_t i = 0; !failed && i < width; i++) {
            if ((i && put(&b, "\t", 1) < 0) ||
                put_value(&b, PyTuple_GET_ITEM(row, i), kinds[i], dumps) < 0)
                failed = 1;
        }
        Py_DECREF(row);
        if (failed || put(&b, "\n", 1) < 0) {
            PyMem_Free(b.data);
            return NULL;
        }
    }
    PyObject *out = PyBytes_FromStringAndSize(b.data ? b.data : "", b.size);
    PyMem_Free(b.data);
    return out;
}

static PyMethodDef methods[] = {
    {"format_rows", (PyCFunction)(void (*)(void))format_rows, METH_FASTCALL,
     "format_rows(rows, kinds, dumps) -> bytes: rows as PostgreSQL COPY text lines."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "etl.load._ccopy",
    .m_doc = "Compiled COPY text formatter (the Python formatters in copytext.py are the reference).",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__ccopy(void)
{
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL)
        return NULL;
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    if (PyModule_AddIntConstant(module, "TEXT", K_TEXT) < 0 ||
        PyModule_AddIntConstant(module, "INT", K_INT) < 0 ||
        PyModule_AddIntConstant(module, "BOOL", K_BOOL) < 0 ||
        PyModule_AddIntConstant(module, "TIME", K_TIME) < 0 ||
        PyModule_AddIntConstant(module, "JSON", K_JSON) < 0 ||
        PyModule_AddIntConstant(module, "NOT_NULL", NOT_NULL) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
