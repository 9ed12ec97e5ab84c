/* A compiled `project()` (etl/normalize/project.py): same rules, same results, no interpreter
 * loop per key. The Python function stays the reference; tests compare the two on random input.
 * The module's other half, the row builder, is _cbuild.c.
 *
 * project(obj, fields, row, tag=None) -> dict | None
 *   obj     the exported object; a dict (anything else is handed to the Python fallback)
 *   fields  {key: (row position, kind)}
 *   row     the list the known values are written into
 *   tag     the expected value of a TAG key
 */
#include "_cnormalize.h"
#include <datetime.h>

/* Kinds: etl/normalize/columns.py (TEXT..JSON) and project.py (SKIP, TAG). */
enum { K_TEXT = 0, K_INT = 1, K_BOOL = 2, K_TIME = 3, K_JSON = 4, K_SKIP = 5, K_TAG = 6 };

static int
set_item(PyObject **slots, Py_ssize_t n, Py_ssize_t at, PyObject *value)
{
    /* row[at] = value, with Python's indexing rules (a negative position counts from the end). */
    if (at < 0)
        at += n;
    if (at < 0 || at >= n) {
        PyErr_SetString(PyExc_IndexError, "list assignment index out of range");
        return -1;
    }
    Py_XSETREF(slots[at], Py_NewRef(value));
    return 0;
}

static int
digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static int
days_in_month(int year, int month)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (month == 2 && (year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)))
        return 29;
    return days[month - 1];
}

/* The API's own timestamp form, "YYYY-MM-DDTHH:MM:SS[.ffffff]+HH:MM", as an aware datetime in
 * UTC: what parse_time() returns for it, without two method calls and a Python frame. Returns
 * NULL without an error for anything else (parse_time() then decides), and on an error. */
static PyObject *
utc_from_api_form(PyObject *value)
{
    if (!PyUnicode_CheckExact(value) || !PyUnicode_IS_ASCII(value))
        return NULL;
    Py_ssize_t n = PyUnicode_GET_LENGTH(value);
    const char *s = (const char *)PyUnicode_1BYTE_DATA(value);
    if (n != 25 && n != 32)
        return NULL;
    if (s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':')
        return NULL;
    int us = 0;
    const char *tz = s + 19;
    if (n == 32) {
        if (s[19] != '.' || (us = digits(s + 20, 6)) < 0)
            return NULL;
        tz = s + 26;
    }
    if ((tz[0] != '+' && tz[0] != '-') || tz[3] != ':')
        return NULL;
    int year = digits(s, 4), month = digits(s + 5, 2), day = digits(s + 8, 2);
    int hour = digits(s + 11, 2), minute = digits(s + 14, 2), second = digits(s + 17, 2);
    int off_h = digits(tz + 1, 2), off_m = digits(tz + 4, 2);
    if (year < 1 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 ||
        minute < 0 || minute > 59 || second < 0 || second > 59 || off_h < 0 || off_h > 23 ||
        off_m < 0 || off_m > 59 || day > days_in_month(year, month))
        return NULL;
    int minutes = hour * 60 + minute - (tz[0] == '+' ? 1 : -1) * (off_h * 60 + off_m);
    if (minutes < 0) {
        minutes += 24 * 60;
        if (--day < 1) {
            if (--month < 1) {
                month = 12;
                year--;
            }
            day = days_in_month(year < 1 ? 1 : year, month);
        }
    }
    else if (minutes >= 24 * 60) {
        minutes -= 24 * 60;
        if (++day > days_in_month(year, month)) {
            day = 1;
            if (++month > 12) {
                month = 1;
                year++;
            }
        }
    }
    if (year < 1 || year > 9999)
        return NULL; /* out of datetime's range: parse_time() reports it */
    return PyDateTimeAPI->DateTime_FromDateAndTime(year, month, day, minutes / 60, minutes % 60,
                                                   second, us, PyDateTime_TimeZone_UTC,
                                                   PyDateTimeAPI->DateTimeType);
}

int
fits_bigint(PyObject *value)
{
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return overflow == 0;
}

/* 1: stored in the row; 0: a misfit for `rest`; -1: error. */
static int
place(nstate *st, PyObject **slots, Py_ssize_t n, PyObject *key, PyObject *value, PyObject *spec,
      PyObject *tag)
{
    if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) != 2) {
        PyErr_SetString(PyExc_TypeError, "a field spec must be a (position, kind) tuple");
        return -1;
    }
    Py_ssize_t at = PyLong_AsSsize_t(PyTuple_GET_ITEM(spec, 0));
    if (at == -1 && PyErr_Occurred())
        return -1;
    long kind = PyLong_AsLong(PyTuple_GET_ITEM(spec, 1));
    if (kind == -1 && PyErr_Occurred())
        return -1;
    switch (kind) {
    case K_TEXT:
        if (PyUnicode_CheckExact(value))
            return set_item(slots, n, at, value) < 0 ? -1 : 1;
        return 0;
    case K_TIME: {
        PyObject *parsed = utc_from_api_form(value);
        if (parsed == NULL && !PyErr_Occurred())
            parsed = PyObject_CallFunctionObjArgs(st->parse_time, value, key, NULL);
        if (parsed == NULL)
            return -1;
        int r = set_item(slots, n, at, parsed);
        Py_DECREF(parsed);
        return r < 0 ? -1 : 1;
    }
    case K_INT:
        if (PyLong_CheckExact(value) && fits_bigint(value))
            return set_item(slots, n, at, value) < 0 ? -1 : 1;
        return 0;
    case K_BOOL:
        if (PyBool_Check(value))
            return set_item(slots, n, at, value) < 0 ? -1 : 1;
        return 0;
    case K_JSON:
        return set_item(slots, n, at, value) < 0 ? -1 : 1;
    case K_SKIP:
        return 1;
    default: /* TAG: dropped when it is the expected value (values are plain: no Python code) */
        return PyUnicode_CheckExact(value) && PyUnicode_CheckExact(tag) &&
               PyUnicode_Compare(value, tag) == 0;
    }
}

/* Whether every key of obj is a str and every value a JSON type: then projecting it runs no
 * Python code but parse_time() (a key's hash or __eq__, a value's __eq__ could otherwise change
 * obj or the row while they are read). */
int
plain(PyObject *obj)
{
    PyObject *key, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(obj, &pos, &key, &v)) {
        if (!PyUnicode_CheckExact(key))
            return 0;
        if (!(v == Py_None || PyUnicode_CheckExact(v) || PyLong_CheckExact(v) || PyBool_Check(v) ||
              PyFloat_CheckExact(v) || PyList_CheckExact(v) || PyDict_CheckExact(v)))
            return 0;
    }
    return 1;
}

int
project_into(nstate *st, PyObject *obj, PyObject *fields, PyObject **slots, Py_ssize_t n,
             PyObject *tag, PyObject **rest_out)
{
    /* obj and fields are exact dicts and obj is plain (the callers check: see plain());
     * *rest_out: new dict or NULL. */
    PyObject *rest = NULL;
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(obj, &pos, &key, &value)) {
        PyObject *spec = PyDict_GetItemWithError(fields, key);
        if (spec != NULL) {
            if (value == Py_None)
                continue;
            int placed = place(st, slots, n, key, value, spec, tag);
            if (placed < 0)
                goto fail;
            if (placed)
                continue;
        }
        else if (PyErr_Occurred())
            goto fail;
        if (rest == NULL && (rest = PyDict_New()) == NULL)
            goto fail;
        if (PyDict_SetItem(rest, key, value) < 0)
            goto fail;
    }
    *rest_out = rest;
    return 0;
fail:
    Py_XDECREF(rest);
    return -1;
}

static PyObject *
project(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 3 || nargs > 4) {
        PyErr_SetString(PyExc_TypeError, "project(obj, fields, row, tag=None)");
        return NULL;
    }
    nstate *st = get_nstate(module);
    if (st->parse_time == NULL || st->fallback == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_cproject.configure() was not called");
        return NULL;
    }
    PyObject *obj = args[0], *fields = args[1], *row = args[2];
    PyObject *tag = nargs == 4 ? args[3] : Py_None;
    if (!PyDict_CheckExact(obj) || !PyDict_CheckExact(fields) || !PyList_CheckExact(row) ||
        !plain(obj))
        return PyObject_Vectorcall(st->fallback, args, (size_t)nargs, NULL);
    PyObject *rest = NULL;
    /* Only parse_time() (ours, which touches neither) runs while the row's items are written. */
    int r = project_into(st, obj, fields, ((PyListObject *)row)->ob_item, PyList_GET_SIZE(row),
                         tag, &rest);
    if (r < 0)
        return NULL;
    if (rest == NULL)
        Py_RETURN_NONE;
    return rest;
}

static PyObject *
configure(PyObject *module, PyObject *args)
{
    PyObject *parse_time, *fallback, *bad_field;
    if (!PyArg_ParseTuple(args, "OOO:configure", &parse_time, &fallback, &bad_field))
        return NULL;
    nstate *st = get_nstate(module);
    Py_XSETREF(st->parse_time, Py_NewRef(parse_time));
    Py_XSETREF(st->fallback, Py_NewRef(fallback));
    Py_XSETREF(st->bad_field, Py_NewRef(bad_field));
    Py_RETURN_NONE;
}

static int
traverse(PyObject *module, visitproc visit, void *arg)
{
    PyObject **objects = (PyObject **)get_nstate(module);
    for (size_t i = 0; i < NSTATE_OBJECTS; i++)
        Py_VISIT(objects[i]);
    return 0;
}

static int
clear(PyObject *module)
{
    PyObject **objects = (PyObject **)get_nstate(module);
    for (size_t i = 0; i < NSTATE_OBJECTS; i++)
        Py_CLEAR(objects[i]);
    return 0;
}

static void
free_module(void *module)
{
    clear((PyObject *)module);
}

static PyMethodDef methods[] = {
    {"project", (PyCFunction)(void (*)(void))project, METH_FASTCALL,
     "Copy the known keys of obj into row; return the rest or None (see project.py)."},
    {"configure", configure, METH_VARARGS,
     "configure(parse_time, fallback, bad_field): the Python helpers project() calls."},
    {"build", (PyCFunction)(void (*)(void))build, METH_FASTCALL,
     "build(conv, cid, messages): one conversation's rows, or None (see _cbuild.c)."},
    {"configure_build", configure_build, METH_O,
     "configure_build(spec): the field maps and row layout build() uses (see core.py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "etl.normalize._cproject",
    .m_doc = "Compiled project() and row builder for the normalizer (Python is the reference).",
    .m_size = sizeof(nstate),
    .m_methods = methods,
    .m_traverse = traverse,
    .m_clear = clear,
    .m_free = free_module,
};

PyMODINIT_FUNC
PyInit__cproject(void)
{
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL)
        return NULL;
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    memset(get_nstate(module), 0, sizeof(nstate));
    return module;
}
