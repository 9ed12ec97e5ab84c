/* Shared by the two halves of etl.normalize._cproject: project.c's field projection and
 * _cbuild.c's row builder. */
#ifndef ETL_CNORMALIZE_H
#define ETL_CNORMALIZE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>

/* A fresh tuple's item array, written while the tuple is still private to its builder. */
#define SLOTS(t) (((PyTupleObject *)(t))->ob_item)

typedef struct {
    PyObject *parse_time; /* project.parse_time(value, key) */
    PyObject *fallback;   /* project.project_py, for objects that are not exact dicts */
    PyObject *bad_field;  /* project.BadField */
    /* configure_build(): the field maps, known types, tags and row layout */
    PyObject *conv_fields, *conv_time_fields, *msg_fields, *msg_other_fields, *question_fields,
        *click_fields, *content_fields, *content_other_fields, *button_fields, *analysis_fields,
        *intent_fields, *action_fields, *known_message, *known_content;
    PyObject *s_conversation, *s_question_analysis, *s_button, *s_intent, *s_action;
    PyObject *k_underscore, *k_value, *k_time, *k_id, *k_type, *k_question, *k_intents,
        *k_actions, *k_button_clicked, *k_content, *k_analysis, *k_intent, *k_buttons,
        *k_predicted, *k_came_from, *k_displayed, *k_inherit_skill;
    Py_ssize_t n_conv, n_msg, n_content, n_button, n_analysis, n_intent, n_action;
    Py_ssize_t msg_time_at, predicted_intent_at, came_from_intent_at, displayed_action_at,
        came_from_action_at, analysis_intent_at, conv_count_at, conv_extra_at;
} nstate;

/* The object fields above, from parse_time to k_inherit_skill, as one array. */
#define NSTATE_OBJECTS (offsetof(nstate, n_conv) / sizeof(PyObject *))

static inline nstate *
get_nstate(PyObject *module)
{
    return (nstate *)PyModule_GetState(module);
}

int fits_bigint(PyObject *value);
int plain(PyObject *obj);
int project_into(nstate *st, PyObject *obj, PyObject *fields, PyObject **slots, Py_ssize_t n,
                 PyObject *tag, PyObject **rest);
PyObject *build(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *configure_build(PyObject *module, PyObject *spec);

#endif
