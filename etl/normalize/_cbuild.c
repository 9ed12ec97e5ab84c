/* A compiled row builder for one conversation (etl/normalize/core.py's _Builder and the body of
 * normalize_conversation): the same rows, in the same order, with the same `extra` dicts.
 *
 * build(conv, cid, messages) -> (conversation_row, messages, content, buttons,
 *                                intent_analysis, intents, actions) | None
 * None means "let the Python builder do it": for anything this file does not handle itself
 * (a value of a type JSON does not produce, a malformed message, a timestamp parse_time()
 * refuses), so that every data error is raised by one implementation, with its field path.
 * The Python builder stays the reference; tests compare the two on random conversations.
 */
#include "_cnormalize.h"

typedef struct {
    PyObject *rows[6]; /* messages, content, buttons, analysis, intents, actions */
    PyObject *cid;
    PyObject *seen_at; /* borrowed: the message's time */
} builder;

enum { R_MESSAGES, R_CONTENT, R_BUTTONS, R_ANALYSIS, R_INTENTS, R_ACTIONS };

/* 1: an exact dict of str keys and JSON values; 0: another plain JSON value (not a mapping);
 * -1: anything else. Every object is checked so before it is read: then no Python code (a
 * key's __eq__, a value's) runs while the builder holds borrowed references into it. */
static int
json_kind(PyObject *v)
{
    if (PyDict_CheckExact(v))
        return plain(v) ? 1 : -1;
    if (v == Py_None || PyUnicode_CheckExact(v) || PyLong_CheckExact(v) || PyBool_Check(v) ||
        PyFloat_CheckExact(v) || PyList_CheckExact(v))
        return 0;
    return -1;
}

static PyObject *
new_row(Py_ssize_t n)
{
    PyObject *row = PyTuple_New(n);
    if (row == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++)
        PyTuple_SET_ITEM(row, i, Py_NewRef(Py_None));
    return row;
}

static void
put(PyObject *row, Py_ssize_t at, PyObject *value) /* row is still private to the builder */
{
    Py_SETREF(SLOTS(row)[at], Py_NewRef(value));
}

/* rest[key] = sub, creating rest; 0 or -1. */
static int
nest(PyObject **rest, PyObject *key, PyObject *sub)
{
    if (*rest == NULL && (*rest = PyDict_New()) == NULL)
        return -1;
    return PyDict_SetItem(*rest, key, sub);
}

/* The row's `extra` (core._extra): "_" keys get one more "_"; steals `rest` (may be NULL). */
static PyObject *
extra(nstate *st, PyObject *rest, int *bail)
{
    if (rest == NULL)
        return Py_NewRef(Py_None);
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    int marked = 0;
    while (PyDict_Next(rest, &pos, &key, &value)) {
        if (!PyUnicode_CheckExact(key)) {
            *bail = 1;
            Py_DECREF(rest);
            return NULL;
        }
        if (PyUnicode_GET_LENGTH(key) && PyUnicode_READ_CHAR(key, 0) == '_')
            marked = 1;
    }
    if (!marked)
        return rest;
    PyObject *renamed = PyDict_New();
    pos = 0;
    while (renamed != NULL && PyDict_Next(rest, &pos, &key, &value)) {
        int r;
        if (PyUnicode_GET_LENGTH(key) && PyUnicode_READ_CHAR(key, 0) == '_') {
            PyObject *longer = PyUnicode_Concat(st->k_underscore, key);
            r = longer == NULL ? -1 : PyDict_SetItem(renamed, longer, value);
            Py_XDECREF(longer);
        }
        else
            r = PyDict_SetItem(renamed, key, value);
        if (r < 0)
            Py_CLEAR(renamed);
    }
    Py_DECREF(rest);
    return renamed;
}

/* row[at] = extra(rest); steals rest. 0, or -1 with *bail or an error set. */
static int
put_extra(nstate *st, PyObject *row, Py_ssize_t at, PyObject *rest, int *bail)
{
    PyObject *e = extra(st, rest, bail);
    if (e == NULL)
        return -1;
    put(row, at, e);
    Py_DECREF(e);
    return 0;
}

/* A row filled after it was created with only None may have been untracked by a collection in
 * between (CPython untracks tuples of atomic values); it now holds dicts, so track it again. */
static void
track(PyObject *row)
{
    if (!PyObject_GC_IsTracked(row))
        PyObject_GC_Track(row);
}

static int
append(PyObject *list, PyObject *row)
{
    track(row);
    int r = PyList_Append(list, row);
    Py_DECREF(row);
    return r;
}

/* A "{"_value": item}" extra for a list item that is not an object. */
static int
put_value_extra(nstate *st, PyObject *row, Py_ssize_t at, PyObject *item)
{
    PyObject *e = PyDict_New();
    if (e == NULL || PyDict_SetItem(e, st->k_value, item) < 0) {
        Py_XDECREF(e);
        return -1;
    }
    put(row, at, e);
    Py_DECREF(e);
    return 0;
}

/* core._dimension: project an intent/action; emit its row when it has an id. Returns the
 * projected row (new ref) and sets *left to what the parent keeps (new ref or NULL). */
static PyObject *
dimension(nstate *st, builder *b, PyObject *obj, int table, PyObject **left, int *bail)
{
    int is_intent = table == R_INTENTS;
    Py_ssize_t n = is_intent ? st->n_intent : st->n_action;
    PyObject *values = new_row(n);
    if (values == NULL)
        return NULL;
    PyObject *rest = NULL;
    if (project_into(st, obj, is_intent ? st->intent_fields : st->action_fields, SLOTS(values), n,
                     is_intent ? st->s_intent : st->s_action, &rest) < 0) {
        Py_DECREF(values);
        return NULL;
    }
    *left = NULL;
    if (PyTuple_GET_ITEM(values, 0) == Py_None) {
        *left = rest;
        return values;
    }
    /* Emitted as it is: the callers only read the projected columns before last_seen_at. */
    put(values, n - 2, b->seen_at);
    if (put_extra(st, values, n - 1, rest, bail) < 0 ||
        (track(values), PyList_Append(b->rows[table], values)) < 0) {
        Py_DECREF(values);
        return NULL;
    }
    return values;
}

/* core._refs for message["intents"] (is_intent) or message["actions"]. */
static int
refs(nstate *st, builder *b, PyObject *obj, PyObject *row, PyObject **rest, int is_intent,
     int *bail)
{
    PyObject *key = is_intent ? st->k_intents : st->k_actions;
    int kind = json_kind(obj);
    if (kind < 0)
        return (*bail = 1), -1;
    if (kind == 0)
        return nest(rest, key, obj);
    PyObject *names[2] = {is_intent ? st->k_predicted : st->k_displayed, st->k_came_from};
    PyObject *sub = NULL;
    Py_ssize_t present = 0;
    for (int i = 0; i < 2; i++) {
        PyObject *ref = PyDict_GetItemWithError(obj, names[i]);
        if (ref == NULL && PyErr_Occurred())
            goto fail;
        if (ref == NULL)
            continue;
        present++;
        if (ref == Py_None)
            continue;
        int ref_kind = json_kind(ref);
        if (ref_kind < 0) {
            *bail = 1;
            goto fail;
        }
        PyObject *left = NULL;
        if (ref_kind == 0)
            left = Py_NewRef(ref);
        else {
            PyObject *values = dimension(st, b, ref, is_intent ? R_INTENTS : R_ACTIONS, &left, bail);
            if (values == NULL)
                goto fail;
            if (is_intent) {
                Py_ssize_t id_at = i == 0 ? st->predicted_intent_at : st->came_from_intent_at;
                put(row, id_at, PyTuple_GET_ITEM(values, 0));
                put(row, id_at + 1, PyTuple_GET_ITEM(values, 1));
                /* An intent without an id keeps its inherit_skill in the parent's extra. */
                if (PyTuple_GET_ITEM(values, 0) == Py_None &&
                    PyTuple_GET_ITEM(values, 2) != Py_None &&
                    nest(&left, st->k_inherit_skill, PyTuple_GET_ITEM(values, 2)) < 0) {
                    Py_XDECREF(left);
                    Py_DECREF(values);
                    goto fail;
                }
            }
            else {
                Py_ssize_t at = i == 0 ? st->displayed_action_at : st->came_from_action_at;
                for (Py_ssize_t k = 0; k < 4; k++)
                    put(row, at + k, PyTuple_GET_ITEM(values, k));
            }
            Py_DECREF(values);
        }
        if (left != NULL) {
            int r = nest(&sub, names[i], left);
            Py_DECREF(left);
            if (r < 0)
                goto fail;
        }
    }
    if (PyDict_GET_SIZE(obj) > present) {
        PyObject *name, *value;
        Py_ssize_t pos = 0;
        while (PyDict_Next(obj, &pos, &name, &value)) {
            /* Keys are str (json_kind checked obj): compared without Python code. */
            int known = PyUnicode_Compare(name, names[0]) == 0 ||
                        PyUnicode_Compare(name, names[1]) == 0;
            if (!known && nest(&sub, name, value) < 0)
                goto fail;
        }
    }
    if (sub == NULL)
        return 0;
    int r = nest(rest, key, sub);
    Py_DECREF(sub);
    return r;
fail:
    Py_XDECREF(sub);
    return -1;
}

/* A sub-object whose keys become columns of the parent row (a message's button_clicked, a
 * conversation's time): projected into `row` when it is an object, what is left (or a value
 * that is not an object) kept in the parent's rest under `key`. */
static int
project_nested(nstate *st, PyObject *value, PyObject *fields, PyObject *row, Py_ssize_t n,
               PyObject *tag, PyObject *key, PyObject **rest, int *bail)
{
    int kind = json_kind(value);
    PyObject *left = NULL;
    if (kind < 0)
        return (*bail = 1), -1;
    if (kind == 0)
        left = Py_NewRef(value);
    else if (project_into(st, value, fields, SLOTS(row), n, tag, &left) < 0)
        return -1;
    if (left == NULL)
        return 0;
    int r = nest(rest, key, left);
    Py_DECREF(left);
    return r;
}

static PyObject *
get(PyObject *obj, PyObject *key, int *failed)
{
    PyObject *v = PyDict_GetItemWithError(obj, key);
    if (v == NULL && PyErr_Occurred())
        *failed = 1;
    return v == Py_None ? NULL : v;
}

/* A row builder for one item of a list: the parent's id, the parent's position (buttons only),
 * the item's position. */
typedef int (*item_row)(nstate *st, builder *b, PyObject *item, PyObject *mid,
                        PyObject *parent_at, Py_ssize_t position, int *bail);

/* A list-valued key (question.analysis, message.content, content.buttons): a row per item
 * when it is a list; any other value is kept in the parent's rest under the key. */
static int
child_rows(nstate *st, builder *b, PyObject *obj, PyObject *key, item_row row_of, PyObject *mid,
           PyObject *parent_at, PyObject **rest, int *bail)
{
    int failed = 0;
    PyObject *v = get(obj, key, &failed);
    if (failed)
        return -1;
    if (v == NULL)
        return 0;
    if (PyList_CheckExact(v)) {
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(v); i++)
            if (row_of(st, b, PyList_GET_ITEM(v, i), mid, parent_at, i, bail) < 0)
                return -1;
        return 0;
    }
    if (json_kind(v) < 0)
        return (*bail = 1), -1;
    return nest(rest, key, v);
}

static int
analysis_row(nstate *st, builder *b, PyObject *item, PyObject *mid,
             PyObject *Py_UNUSED(parent_at), Py_ssize_t position, int *bail)
{
    int kind = json_kind(item);
    if (kind < 0)
        return (*bail = 1), -1;
    Py_ssize_t n = st->n_analysis;
    PyObject *row = new_row(n);
    if (row == NULL)
        return -1;
    PyObject *at = PyLong_FromSsize_t(position);
    if (at == NULL)
        goto fail;
    put(row, 0, mid);
    put(row, 1, at);
    Py_DECREF(at);
    put(row, 2, b->cid);
    if (kind == 0) {
        if (put_value_extra(st, row, n - 1, item) < 0)
            goto fail;
        return append(b->rows[R_ANALYSIS], row);
    }
    PyObject *rest = NULL;
    if (project_into(st, item, st->analysis_fields, SLOTS(row), n, Py_None, &rest) < 0)
        goto fail;
    PyObject *intent = PyDict_GetItemWithError(item, st->k_intent);
    if (intent == NULL && PyErr_Occurred())
        goto fail_rest;
    if (intent != NULL && intent != Py_None) {
        int intent_kind = json_kind(intent);
        PyObject *left = NULL;
        if (intent_kind < 0) {
            *bail = 1;
            goto fail_rest;
        }
        if (intent_kind == 0)
            left = Py_NewRef(intent);
        else {
            PyObject *values = dimension(st, b, intent, R_INTENTS, &left, bail);
            if (values == NULL)
                goto fail_rest;
            for (Py_ssize_t k = 0; k < 3; k++)
                put(row, st->analysis_intent_at + k, PyTuple_GET_ITEM(values, k));
            Py_DECREF(values);
        }
        if (left != NULL) {
            int r = nest(&rest, st->k_intent, left);
            Py_DECREF(left);
            if (r < 0)
                goto fail_rest;
        }
    }
    if (put_extra(st, row, n - 1, rest, bail) < 0)
        goto fail;
    return append(b->rows[R_ANALYSIS], row);
fail_rest:
    Py_XDECREF(rest);
fail:
    Py_DECREF(row);
    return -1;
}

static int
button_row(nstate *st, builder *b, PyObject *item, PyObject *mid, PyObject *content_at,
           Py_ssize_t position, int *bail)
{
    int kind = json_kind(item);
    if (kind < 0)
        return (*bail = 1), -1;
    Py_ssize_t n = st->n_button;
    PyObject *row = new_row(n), *at = PyLong_FromSsize_t(position);
    if (row == NULL || at == NULL)
        goto fail;
    put(row, 0, mid);
    put(row, 1, content_at);
    put(row, 2, at);
    put(row, 3, b->cid);
    Py_CLEAR(at);
    if (kind == 0) {
        if (put_value_extra(st, row, n - 1, item) < 0)
            goto fail;
    }
    else {
        PyObject *rest = NULL;
        if (project_into(st, item, st->button_fields, SLOTS(row), n, st->s_button, &rest) < 0 ||
            put_extra(st, row, n - 1, rest, bail) < 0)
            goto fail;
    }
    return append(b->rows[R_BUTTONS], row);
fail:
    Py_XDECREF(at);
    Py_XDECREF(row);
    return -1;
}

static int
content_row(nstate *st, builder *b, PyObject *item, PyObject *mid,
            PyObject *Py_UNUSED(parent_at), Py_ssize_t position, int *bail)
{
    int kind = json_kind(item);
    if (kind < 0)
        return (*bail = 1), -1;
    Py_ssize_t n = st->n_content;
    PyObject *row = new_row(n), *at = PyLong_FromSsize_t(position), *rest = NULL;
    if (row == NULL || at == NULL)
        goto fail;
    put(row, 0, mid);
    put(row, 1, at);
    put(row, 2, b->cid);
    if (kind == 0) {
        if (put_value_extra(st, row, n - 1, item) < 0)
            goto fail;
        Py_DECREF(at);
        return append(b->rows[R_CONTENT], row);
    }
    PyObject *ctype = PyDict_GetItemWithError(item, st->k_type);
    if (ctype == NULL && PyErr_Occurred())
        goto fail;
    int known = ctype != NULL && PyUnicode_CheckExact(ctype) ?
                    PySet_Contains(st->known_content, ctype) : 0;
    if (known < 0)
        goto fail;
    if (project_into(st, item, known ? st->content_fields : st->content_other_fields, SLOTS(row),
                     n, Py_None, &rest) < 0)
        goto fail;
    if (known && child_rows(st, b, item, st->k_buttons, button_row, mid, at, &rest, bail) < 0)
        goto fail;
    Py_DECREF(at);
    if (put_extra(st, row, n - 1, rest, bail) < 0) {
        Py_DECREF(row);
        return -1;
    }
    return append(b->rows[R_CONTENT], row);
fail:
    Py_XDECREF(rest);
    Py_XDECREF(at);
    Py_XDECREF(row);
    return -1;
}

/* The message's question: its columns, its analysis rows; *rest gets what is left. */
static int
question(nstate *st, builder *b, PyObject *q, PyObject *row, PyObject *mid, PyObject **rest,
         int *bail)
{
    int kind = json_kind(q);
    if (kind < 0)
        return (*bail = 1), -1;
    if (kind == 0)
        return nest(rest, st->k_question, q);
    PyObject *left = NULL;
    if (project_into(st, q, st->question_fields, SLOTS(row), st->n_msg, st->s_question_analysis,
                     &left) < 0)
        return -1;
    if (child_rows(st, b, q, st->k_analysis, analysis_row, mid, NULL, &left, bail) < 0)
        goto fail;
    if (left == NULL)
        return 0;
    int r = nest(rest, st->k_question, left);
    Py_DECREF(left);
    return r;
fail:
    Py_XDECREF(left);
    return -1;
}

static int
message_row(nstate *st, builder *b, PyObject *msg, PyObject *mid, Py_ssize_t position, int *bail)
{
    Py_ssize_t n = st->n_msg;
    PyObject *row = new_row(n), *at = PyLong_FromSsize_t(position), *rest = NULL;
    if (row == NULL || at == NULL)
        goto fail;
    put(row, 0, mid);
    put(row, 1, b->cid);
    put(row, 2, at);
    Py_CLEAR(at);
    PyObject *mtype = PyDict_GetItemWithError(msg, st->k_type);
    if (mtype == NULL && PyErr_Occurred())
        goto fail;
    int known = mtype != NULL && PyUnicode_CheckExact(mtype) ?
                    PySet_Contains(st->known_message, mtype) : 0;
    if (known < 0)
        goto fail;
    if (project_into(st, msg, known ? st->msg_fields : st->msg_other_fields, SLOTS(row), n,
                     Py_None, &rest) < 0)
        goto fail;
    if (known) {
        int failed = 0;
        b->seen_at = PyTuple_GET_ITEM(row, st->msg_time_at);
        PyObject *v = get(msg, st->k_question, &failed);
        if (failed || (v != NULL && question(st, b, v, row, mid, &rest, bail) < 0))
            goto fail;
        v = get(msg, st->k_intents, &failed);
        if (failed || (v != NULL && refs(st, b, v, row, &rest, 1, bail) < 0))
            goto fail;
        v = get(msg, st->k_actions, &failed);
        if (failed || (v != NULL && refs(st, b, v, row, &rest, 0, bail) < 0))
            goto fail;
        v = get(msg, st->k_button_clicked, &failed);
        if (failed || (v != NULL && project_nested(st, v, st->click_fields, row, n, st->s_button,
                                                   st->k_button_clicked, &rest, bail) < 0))
            goto fail;
        if (child_rows(st, b, msg, st->k_content, content_row, mid, NULL, &rest, bail) < 0)
            goto fail;
    }
    if (put_extra(st, row, n - 1, rest, bail) < 0) {
        Py_DECREF(row);
        return -1;
    }
    return append(b->rows[R_MESSAGES], row);
fail:
    Py_XDECREF(rest);
    Py_XDECREF(at);
    Py_XDECREF(row);
    return -1;
}

/* The conversation's own row and every message; 0, or -1 with *bail or an error set. */
static PyObject *
conversation_row(nstate *st, builder *b, PyObject *conv, PyObject *messages, int *bail)
{
    Py_ssize_t n = st->n_conv;
    PyObject *row = new_row(n), *rest = NULL, *seen = PySet_New(NULL);
    if (row == NULL || seen == NULL)
        goto fail;
    put(row, 0, b->cid);
    if (project_into(st, conv, st->conv_fields, SLOTS(row), n, st->s_conversation, &rest) < 0)
        goto fail;
    int failed = 0;
    PyObject *times = get(conv, st->k_time, &failed);
    if (failed)
        goto fail;
    if (times != NULL && project_nested(st, times, st->conv_time_fields, row, n, Py_None,
                                        st->k_time, &rest, bail) < 0)
        goto fail;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(messages); i++) {
        PyObject *msg = PyList_GET_ITEM(messages, i);
        PyObject *mid = json_kind(msg) == 1 ? PyDict_GetItemWithError(msg, st->k_id) : NULL;
        if (mid == NULL && PyErr_Occurred())
            goto fail;
        /* A bad or repeated id is a data error: the Python builder raises it, with its path. */
        if (mid == NULL || !PyLong_CheckExact(mid) || !fits_bigint(mid)) {
            *bail = 1;
            goto fail;
        }
        int repeated = PySet_Contains(seen, mid);
        if (repeated) {
            *bail = repeated > 0;
            goto fail;
        }
        if (PySet_Add(seen, mid) < 0 || message_row(st, b, msg, mid, i, bail) < 0)
            goto fail;
    }
    PyObject *count = PyLong_FromSsize_t(PyList_GET_SIZE(messages));
    if (count == NULL)
        goto fail;
    put(row, st->conv_count_at, count);
    Py_DECREF(count);
    Py_DECREF(seen);
    if (put_extra(st, row, st->conv_extra_at, rest, bail) < 0) {
        Py_DECREF(row);
        return NULL;
    }
    track(row);
    return row;
fail:
    Py_XDECREF(rest);
    Py_XDECREF(seen);
    Py_XDECREF(row);
    return NULL;
}

PyObject *
build(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    nstate *st = get_nstate(module);
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "build(conv, cid, messages)");
        return NULL;
    }
    if (st->conv_fields == NULL || st->bad_field == NULL || st->parse_time == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_cproject.configure_build() was not called");
        return NULL;
    }
    PyObject *conv = args[0], *messages = args[2];
    if (json_kind(conv) != 1 || !PyList_CheckExact(messages))
        Py_RETURN_NONE;
    builder b = {.cid = args[1], .seen_at = Py_None};
    PyObject *result = NULL, *row = NULL;
    for (int i = 0; i < 6; i++)
        if ((b.rows[i] = PyList_New(0)) == NULL)
            goto done;
    int bail = 0;
    row = conversation_row(st, &b, conv, messages, &bail);
    if (row == NULL) {
        /* A data error (BadField from parse_time) or something unusual: the Python builder
         * does the conversation again and raises the error with its field path. */
        if (bail || !PyErr_Occurred() || PyErr_ExceptionMatches(st->bad_field)) {
            PyErr_Clear();
            result = Py_NewRef(Py_None);
        }
        goto done;
    }
    result = PyTuple_Pack(7, row, b.rows[0], b.rows[1], b.rows[2], b.rows[3], b.rows[4],
                          b.rows[5]);
done:
    Py_XDECREF(row);
    for (int i = 0; i < 6; i++)
        Py_XDECREF(b.rows[i]);
    return result;
}

static int
take_object(PyObject *spec, const char *name, PyObject **slot)
{
    PyObject *value = PyDict_GetItemString(spec, name);
    if (value == NULL) {
        PyErr_Format(PyExc_KeyError, "build spec lacks %s", name);
        return -1;
    }
    Py_XSETREF(*slot, Py_NewRef(value));
    return 0;
}

static int
take_size(PyObject *spec, const char *name, Py_ssize_t *slot)
{
    PyObject *value = PyDict_GetItemString(spec, name);
    if (value == NULL) {
        PyErr_Format(PyExc_KeyError, "build spec lacks %s", name);
        return -1;
    }
    *slot = PyLong_AsSsize_t(value);
    return *slot == -1 && PyErr_Occurred() ? -1 : 0;
}

static int
intern(const char *text, PyObject **slot)
{
    PyObject *s = PyUnicode_InternFromString(text);
    if (s == NULL)
        return -1;
    Py_XSETREF(*slot, s);
    return 0;
}

PyObject *
configure_build(PyObject *module, PyObject *spec)
{
    nstate *st = get_nstate(module);
    if (!PyDict_Check(spec)) {
        PyErr_SetString(PyExc_TypeError, "configure_build(spec: dict)");
        return NULL;
    }
    if (take_object(spec, "conv_fields", &st->conv_fields) < 0 ||
        take_object(spec, "conv_time_fields", &st->conv_time_fields) < 0 ||
        take_object(spec, "msg_fields", &st->msg_fields) < 0 ||
        take_object(spec, "msg_other_fields", &st->msg_other_fields) < 0 ||
        take_object(spec, "question_fields", &st->question_fields) < 0 ||
        take_object(spec, "click_fields", &st->click_fields) < 0 ||
        take_object(spec, "content_fields", &st->content_fields) < 0 ||
        take_object(spec, "content_other_fields", &st->content_other_fields) < 0 ||
        take_object(spec, "button_fields", &st->button_fields) < 0 ||
        take_object(spec, "analysis_fields", &st->analysis_fields) < 0 ||
        take_object(spec, "intent_fields", &st->intent_fields) < 0 ||
        take_object(spec, "action_fields", &st->action_fields) < 0 ||
        take_object(spec, "known_message", &st->known_message) < 0 ||
        take_object(spec, "known_content", &st->known_content) < 0 ||
        take_size(spec, "n_conv", &st->n_conv) < 0 || take_size(spec, "n_msg", &st->n_msg) < 0 ||
        take_size(spec, "n_content", &st->n_content) < 0 ||
        take_size(spec, "n_button", &st->n_button) < 0 ||
        take_size(spec, "n_analysis", &st->n_analysis) < 0 ||
        take_size(spec, "n_intent", &st->n_intent) < 0 ||
        take_size(spec, "n_action", &st->n_action) < 0 ||
        take_size(spec, "msg_time_at", &st->msg_time_at) < 0 ||
        take_size(spec, "predicted_intent_at", &st->predicted_intent_at) < 0 ||
        take_size(spec, "came_from_intent_at", &st->came_from_intent_at) < 0 ||
        take_size(spec, "displayed_action_at", &st->displayed_action_at) < 0 ||
        take_size(spec, "came_from_action_at", &st->came_from_action_at) < 0 ||
        take_size(spec, "analysis_intent_at", &st->analysis_intent_at) < 0 ||
        take_size(spec, "conv_count_at", &st->conv_count_at) < 0 ||
        take_size(spec, "conv_extra_at", &st->conv_extra_at) < 0 ||
        intern("conversation", &st->s_conversation) < 0 ||
        intern("question_analysis", &st->s_question_analysis) < 0 ||
        intern("button", &st->s_button) < 0 || intern("intent", &st->s_intent) < 0 ||
        intern("action", &st->s_action) < 0 || intern("_", &st->k_underscore) < 0 ||
        intern("_value", &st->k_value) < 0 || intern("time", &st->k_time) < 0 ||
        intern("id", &st->k_id) < 0 || intern("type", &st->k_type) < 0 ||
        intern("question", &st->k_question) < 0 || intern("intents", &st->k_intents) < 0 ||
        intern("actions", &st->k_actions) < 0 ||
        intern("button_clicked", &st->k_button_clicked) < 0 ||
        intern("content", &st->k_content) < 0 || intern("analysis", &st->k_analysis) < 0 ||
        intern("intent", &st->k_intent) < 0 || intern("buttons", &st->k_buttons) < 0 ||
        intern("predicted", &st->k_predicted) < 0 ||
        intern("came_from", &st->k_came_from) < 0 ||
        intern("displayed", &st->k_displayed) < 0 ||
        intern("inherit_skill", &st->k_inherit_skill) < 0)
        return NULL;
    Py_RETURN_NONE;
}
