/* A compiled digit-run scan for the splitter (etl/extract/split.py): whether a piece of the
 * body holds `length` digits in a row, without copying it (the Python version copies,
 * translates and searches it; the same answer, tests compare the two).
 *
 * digit_run(buffer, start, end, length) -> bool
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define DIGIT(c) ((c) >= '0' && (c) <= '9')

static PyObject *
digit_run(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer view;
    Py_ssize_t start, end, length;
    if (!PyArg_ParseTuple(args, "y*nnn:digit_run", &view, &start, &end, &length))
        return NULL;
    if (start < 0 || end < 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "digit_run: start and end must not be negative");
        return NULL;
    }
    if (end > view.len)
        end = view.len;
    const unsigned char *s = (const unsigned char *)view.buf;
    int found = length <= 0;
    /* With no room for the run, nothing to read (and start + length cannot overflow below). */
    Py_ssize_t first = length <= end - start ? start + length - 1 : end;
    /* Any `length` consecutive positions hold exactly one of start+length-1, +2*length-1, ...:
     * only those are looked at, and the run around one that is a digit is measured. Most
     * are not digits, so about one byte in `length` is read. */
    for (Py_ssize_t i = first; !found && i < end;) {
        if (!DIGIT(s[i])) {
            i += length;
            continue;
        }
        Py_ssize_t lo = i, hi = i;
        while (lo > start && DIGIT(s[lo - 1]))
            lo--;
        while (hi + 1 < end && DIGIT(s[hi + 1]))
            hi++;
        found = hi - lo + 1 >= length;
        i = hi + 1 + length; /* s[hi + 1] is not a digit: the next run starts after it */
    }
    PyBuffer_Release(&view);
    return PyBool_FromLong(found);
}

static PyMethodDef methods[] = {
    {"digit_run", digit_run, METH_VARARGS,
     "digit_run(buffer, start, end, length) -> bool: `length` ASCII digits in a row in "
     "buffer[start:end]."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "etl.extract._cscan",
    .m_doc = "Compiled digit-run scan for the splitter (split.py's Python scan is the reference).",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__cscan(void)
{
    return PyModule_Create(&module_def);
}
