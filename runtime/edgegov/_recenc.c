/* edgegov._recenc: optional CPython accelerator for the two hot lineage records, and for
 * decoding records (``loads``, at the end).
 *
 * ``decision(enc, cmd, now_ms, d)`` and ``event(enc, ev, now_ms, d)`` do what
 * ``edgegov.core.record.Encoder.decision`` / ``.event`` do for the common case and write
 * the same bytes into ``enc.buf``, updating ``enc.n``, ``enc.t``, ``enc.seq_ref`` and
 * ``enc.prev_out`` exactly as the Python code does. The pure-Python encoder stays the single
 * source of truth (it is what runs on MicroPython); ``tests/test_record_accel.py`` checks
 * that both produce identical bytes and state.
 *
 * The common case: a DECISION whose sequence number, the previous one and both times are
 * integers within 64 bits, whose values are a dict holding the envelope's channels (all of
 * them: the vector layout; some of them, as exact str keys: the pair layout) as plain ints
 * (within CBOR's 64-bit range) or bools; an EVENT that is a tick, or telemetry with the same
 * kind of values over the envelope's inputs; outputs, expected outputs and
 * events as plain ints; a buffer large enough for the record. For anything else both
 * functions return False before changing anything (buffer contents included), and the
 * caller runs the Python code. They return True when the record has been written.
 *
 * Every value read from the objects is turned into plain C data before anything is
 * written, so no Python code can run between the checks and the writes.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define K_DECISION 2
#define K_EVENT 3
#define EV_TELEMETRY 2
#define EV_TICK 3
#define CLAMP 1
#define MAX_EVENTS 64 /* more than the governor's MAX_EVENTS; beyond: the Python code */
#define SMALL 64      /* channels and inputs; beyond: the Python code */

/* One CBOR head: major type and argument (ints: 0/1 and n or -1-n; bools: 7 and 20/21). */
typedef struct {
    uint64_t u;
    unsigned char major;
} Item;

static PyObject *s_buf, *s_n, *s_t, *s_seq_ref, *s_prev_out, *s_env, *s_ch_names,
    *s_in_names, *s_seq, *s_values, *s_verdict, *s_reason, *s_rule, *s_margin, *s_output,
    *s_proposed, *s_n_events, *s_ev_code, *s_ev_arg, *s_kind, *s_ch_index, *s_in_index;

static Py_ssize_t
head_len(uint64_t v)
{
    if (v < 24)
        return 1;
    if (v < 0x100)
        return 2;
    if (v < 0x10000)
        return 3;
    if (v < 0x100000000ULL)
        return 5;
    return 9;
}

/* Encoder._head: the shortest form. */
static unsigned char *
put_head(unsigned char *p, unsigned major, uint64_t v)
{
    unsigned char mt = (unsigned char)(major << 5);
    if (v < 24) {
        *p++ = (unsigned char)(mt | v);
    }
    else if (v < 0x100) {
        *p++ = mt | 24;
        *p++ = (unsigned char)v;
    }
    else if (v < 0x10000) {
        *p++ = mt | 25;
        *p++ = (unsigned char)(v >> 8);
        *p++ = (unsigned char)v;
    }
    else if (v < 0x100000000ULL) {
        *p++ = mt | 26;
        *p++ = (unsigned char)(v >> 24);
        *p++ = (unsigned char)(v >> 16);
        *p++ = (unsigned char)(v >> 8);
        *p++ = (unsigned char)v;
    }
    else {
        int i;
        *p++ = mt | 27;
        for (i = 0; i < 8; i++)
            *p++ = (unsigned char)(v >> (56 - 8 * i));
    }
    return p;
}

static unsigned char *
put_item(unsigned char *p, const Item *it)
{
    return put_head(p, it->major, it->u);
}

static Py_ssize_t
item_len(const Item *it)
{
    return head_len(it->u);
}

static int
same_item(const Item *a, const Item *b)
{
    return a->major == b->major && a->u == b->u;
}

/* The value of an exact int held in one machine word ("compact": every scaled value,
 * time and code in practice) → 1; a larger one → 0. Saves the general conversion. */
static int
compact(PyObject *v, long long *x)
{
#if PY_VERSION_HEX >= 0x030C0000
    if (PyUnstable_Long_IsCompact((PyLongObject *)v)) {
        *x = (long long)PyUnstable_Long_CompactValue((PyLongObject *)v);
        return 1;
    }
    return 0;
#else
    Py_ssize_t size = Py_SIZE(v);
    if (size == 0) {
        *x = 0;
        return 1;
    }
    if (size == 1 || size == -1) {
        long long d = (long long)((PyLongObject *)v)->ob_digit[0];
        *x = size < 0 ? -d : d;
        return 1;
    }
    return 0;
#endif
}

/* An exact int in -2**64 .. 2**64-1 (what Encoder.int writes as given) → 1 and *it;
 * anything else → 0, with no error set. */
static int
int_item(PyObject *v, Item *it)
{
    int overflow;
    long long x;
    unsigned long long u;
    PyObject *inv;

    if (!PyLong_CheckExact(v))
        return 0;
    if (compact(v, &x))
        overflow = 0;
    else
        x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow == 0) {
        if (x == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
        if (x >= 0) {
            it->major = 0;
            it->u = (uint64_t)x;
        }
        else {
            it->major = 1;
            it->u = (uint64_t)(-1 - x);
        }
        return 1;
    }
    if (overflow > 0) {
        u = PyLong_AsUnsignedLongLong(v);
        if (u == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
        it->major = 0;
        it->u = (uint64_t)u;
        return 1;
    }
    /* below -2**63: -1 - v == ~v must fit in 64 bits */
    inv = PyNumber_Invert(v);
    if (inv == NULL) {
        PyErr_Clear();
        return 0;
    }
    u = PyLong_AsUnsignedLongLong(inv);
    Py_DECREF(inv);
    if (u == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    it->major = 1;
    it->u = (uint64_t)u;
    return 1;
}

/* An exact int within a signed 64-bit range → 1 and *out; anything else → 0. */
static int
i64(PyObject *v, int64_t *out)
{
    int overflow;
    long long x;

    if (!PyLong_CheckExact(v))
        return 0;
    if (compact(v, &x)) {
        *out = (int64_t)x;
        return 1;
    }
    x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow != 0 || (x == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    *out = (int64_t)x;
    return 1;
}

/* Encoder.int(a - b) for two signed 64-bit values: the difference always fits. */
static void
diff_item(int64_t a, int64_t b, Item *it)
{
    if (a >= b) {
        it->major = 0;
        it->u = (uint64_t)a - (uint64_t)b;
    }
    else {
        it->major = 1;
        it->u = (uint64_t)b - (uint64_t)a - 1;
    }
}

/* A list or tuple of at least n items, or NULL. */
static PyObject **
items_of(PyObject *seq, Py_ssize_t n)
{
    if (PyList_CheckExact(seq)) {
        if (PyList_GET_SIZE(seq) < n)
            return NULL;
        return ((PyListObject *)seq)->ob_item;
    }
    if (PyTuple_CheckExact(seq)) {
        if (PyTuple_GET_SIZE(seq) < n)
            return NULL;
        return ((PyTupleObject *)seq)->ob_item;
    }
    return NULL;
}

/* A value the vector or pair layout writes as one head: a bool or an int item. */
static int
value_item(PyObject *v, Item *it)
{
    if (v == Py_True) {
        it->major = 7;
        it->u = 21;
        return 1;
    }
    if (v == Py_False) {
        it->major = 7;
        it->u = 20;
        return 1;
    }
    return int_item(v, it);
}

/* Encoder._pairs when every key is a known name (an exact str in the envelope's index)
 * and every value a bool or an int item: 1 with the items and their indices in index
 * order; 0 for anything else (unknown keys, markers, ...). Exact str keys and exact dicts:
 * no look-up here runs Python code. */
static int
pair_items(PyObject *values, PyObject *index, Py_ssize_t n, Item *out, Py_ssize_t *idx,
           Py_ssize_t *count)
{
    Py_ssize_t pos = 0, k = 0, j;
    PyObject *key, *v, *at;
    int64_t x;

    if (!PyDict_CheckExact(index) || PyDict_GET_SIZE(values) > n)
        return 0;
    while (PyDict_Next(values, &pos, &key, &v)) {
        Item it;
        if (!PyUnicode_CheckExact(key))
            return 0;
        at = PyDict_GetItemWithError(index, key);
        if (at == NULL) {
            PyErr_Clear();
            return 0;
        }
        if (!i64(at, &x) || x < 0 || x >= n || !value_item(v, &it))
            return 0;
        /* insertion into index order (at most SMALL items) */
        for (j = k; j > 0 && idx[j - 1] > (Py_ssize_t)x; j--) {
            idx[j] = idx[j - 1];
            out[j] = out[j - 1];
        }
        if (j > 0 && idx[j - 1] == (Py_ssize_t)x)
            return 0; /* two keys for one index: the Python code */
        idx[j] = (Py_ssize_t)x;
        out[j] = it;
        k++;
    }
    *count = k;
    return 1;
}

/* Encoder._values for the vector case: 1 and the items, 0 for anything else (the pairs
 * layout, null, a value outside the vector, a dict subclass, ...). */
static int
vector_items(PyObject *values, PyObject *names, Item *out, Py_ssize_t *count)
{
    PyObject **nm;
    Py_ssize_t n, i;

    if (!PyDict_CheckExact(values))
        return 0;
    if (PyList_CheckExact(names))
        n = PyList_GET_SIZE(names);
    else if (PyTuple_CheckExact(names))
        n = PyTuple_GET_SIZE(names);
    else
        return 0;
    if (n > SMALL || PyDict_GET_SIZE(values) != n)
        return 0;
    for (i = 0; i < n; i++) {
        /* a look-up can run a key's __eq__ (a hash collision): take the name afresh and
         * hold it; the value found is converted before anything else runs */
        PyObject *name, *v;
        if ((nm = items_of(names, n)) == NULL)
            return 0;
        name = nm[i];
        Py_INCREF(name);
        v = PyDict_GetItemWithError(values, name);
        Py_DECREF(name);
        if (v == NULL) {
            PyErr_Clear();
            return 0;
        }
        if (!value_item(v, &out[i]))
            return 0;
    }
    *count = n;
    return 1;
}

/* The attributes read from the objects; released together. */
typedef struct {
    PyObject *buf, *t, *seq_ref, *prev_out, *env, *env_n, *names, *seq, *values, *verdict,
        *reason, *rule, *margin, *output, *proposed, *n_events, *ev_code, *ev_arg, *kind,
        *index;
} Refs;

static void
release(Refs *r)
{
    Py_XDECREF(r->buf);
    Py_XDECREF(r->t);
    Py_XDECREF(r->seq_ref);
    Py_XDECREF(r->prev_out);
    Py_XDECREF(r->env);
    Py_XDECREF(r->env_n);
    Py_XDECREF(r->names);
    Py_XDECREF(r->seq);
    Py_XDECREF(r->values);
    Py_XDECREF(r->verdict);
    Py_XDECREF(r->reason);
    Py_XDECREF(r->rule);
    Py_XDECREF(r->margin);
    Py_XDECREF(r->output);
    Py_XDECREF(r->proposed);
    Py_XDECREF(r->n_events);
    Py_XDECREF(r->ev_code);
    Py_XDECREF(r->ev_arg);
    Py_XDECREF(r->kind);
    Py_XDECREF(r->index);
}

/* getattr that clears the error: a missing attribute leaves the record to the Python
 * code, which raises it there. */
static PyObject *
attr(PyObject *o, PyObject *name)
{
    PyObject *v = PyObject_GetAttr(o, name);
    if (v == NULL)
        PyErr_Clear();
    return v;
}

/* Shared by both records. is_decision selects DECISION (src is the command) or EVENT (a
 * tick or telemetry). Returns Py_True, Py_False, or NULL with an exception only if
 * committing the encoder's new state fails after the bytes were written.
 *
 * Order: (a) every attribute read (a property could run Python code), (b) the dict
 * look-ups of the values, converted at once, (c) the pure C checks over list items and the
 * exact size, (d) the writes and the new state. (c) and (d) run no Python code, so the
 * list items seen in (c) are the ones written and stored in (d). */
static PyObject *
encode(PyObject *enc, PyObject *src, PyObject *now_ms, PyObject *d, int is_decision)
{
    Refs r;
    Item head_dt, seq_it = {0, 0}, vr_it, rule_it, margin_it;
    Item vals[SMALL], outs[SMALL];
    Py_ssize_t val_idx[SMALL];
    unsigned char differs[SMALL];
    PyObject *olds[SMALL];
    Item ev_c[MAX_EVENTS], ev_a[MAX_EVENTS];
    Py_ssize_t n_vals = 0, n_ch, count = 0, i, size, n_ev;
    int64_t now, t, seq = 0, seq_ref = 0, verdict, reason, n_events, kind = 0, ch;
    PyObject **out_items, **prop_items, **prev_items, **code_items, **arg_items;
    int extra, has_values, pairs = 0;
    unsigned char *p, *start;
    PyObject *result;

    memset(&r, 0, sizeof(r));

    /* -- (a) attributes and scalars */
    if (!i64(now_ms, &now))
        goto fallback;
    if (!(r.buf = attr(enc, s_buf)) || !PyByteArray_CheckExact(r.buf))
        goto fallback;
    if (!(r.t = attr(enc, s_t)) || !i64(r.t, &t))
        goto fallback;
    if (!(r.prev_out = attr(enc, s_prev_out)) || !PyList_CheckExact(r.prev_out))
        goto fallback;
    if (!(r.env = attr(enc, s_env)))
        goto fallback;
    if (!(r.env_n = attr(r.env, s_n)) || !i64(r.env_n, &ch) || ch < 0 || ch > SMALL)
        goto fallback;
    n_ch = (Py_ssize_t)ch;
    diff_item(now, t, &head_dt);
    if (is_decision) {
        if (!(r.seq = attr(src, s_seq)) || !i64(r.seq, &seq))
            goto fallback;
        if (!(r.seq_ref = attr(enc, s_seq_ref)) || !i64(r.seq_ref, &seq_ref))
            goto fallback;
        diff_item(seq, seq_ref, &seq_it);
        has_values = 1;
        if (!(r.names = attr(r.env, s_ch_names)) || !(r.values = attr(src, s_values)))
            goto fallback;
    }
    else {
        if (!(r.kind = attr(src, s_kind)) || !i64(r.kind, &kind))
            goto fallback;
        if (kind == EV_TELEMETRY) {
            has_values = 1;
            if (!(r.names = attr(r.env, s_in_names)) || !(r.values = attr(src, s_values)))
                goto fallback;
        }
        else if (kind == EV_TICK) {
            has_values = 0;
        }
        else {
            goto fallback; /* operator actions and faults: the Python code */
        }
    }
    if (!(r.verdict = attr(d, s_verdict)) || !i64(r.verdict, &verdict))
        goto fallback;
    if (!(r.reason = attr(d, s_reason)) || !i64(r.reason, &reason))
        goto fallback;
    if (verdict < -(INT64_C(1) << 40) || verdict > (INT64_C(1) << 40)
        || reason < -(INT64_C(1) << 40) || reason > (INT64_C(1) << 40))
        goto fallback;
    diff_item(verdict * 64 + reason, 0, &vr_it);
    if (!(r.rule = attr(d, s_rule)) || !int_item(r.rule, &rule_it))
        goto fallback;
    if (!(r.margin = attr(d, s_margin)) || !int_item(r.margin, &margin_it))
        goto fallback;
    if (!(r.n_events = attr(d, s_n_events)) || !i64(r.n_events, &n_events) || n_events < 0
        || n_events > MAX_EVENTS)
        goto fallback;
    n_ev = (Py_ssize_t)n_events;
    if (!(r.output = attr(d, s_output)) || !(r.proposed = attr(d, s_proposed)))
        goto fallback;
    if (n_ev) {
        if (!(r.ev_code = attr(d, s_ev_code)) || !(r.ev_arg = attr(d, s_ev_arg)))
            goto fallback;
    }

    /* -- (b) the values: as a vector when the dict holds as many keys as there are names
     * (Encoder._values; its look-ups may run a key's __eq__, so a miss is handed back),
     * else as [index, value] pairs of known names (exact str keys: no Python code runs) */
    if (has_values) {
        Py_ssize_t n_names;
        if (PyList_CheckExact(r.names))
            n_names = PyList_GET_SIZE(r.names);
        else if (PyTuple_CheckExact(r.names))
            n_names = PyTuple_GET_SIZE(r.names);
        else
            goto fallback;
        if (!PyDict_CheckExact(r.values))
            goto fallback;
        if (PyDict_GET_SIZE(r.values) == n_names) {
            if (!vector_items(r.values, r.names, vals, &n_vals))
                goto fallback;
        }
        else {
            if (PyDict_GET_SIZE(r.values) > SMALL)
                goto fallback;
            if (!(r.index = attr(r.env, is_decision ? s_ch_index : s_in_index)))
                goto fallback;
            if (!pair_items(r.values, r.index, SMALL, vals, val_idx, &n_vals))
                goto fallback;
            pairs = 1;
        }
    }

    /* -- (c) outputs against the expectation (_expected, _out_differs), events, size */
    if (!(out_items = items_of(r.output, n_ch)) || !(prev_items = items_of(r.prev_out, n_ch))
        || !(prop_items = items_of(r.proposed, n_ch)))
        goto fallback;
    for (i = 0; i < n_ch; i++) {
        PyObject *e = prev_items[i];
        Item exp;
        if (is_decision && verdict <= CLAMP && prop_items[i] != Py_None)
            e = prop_items[i];
        if (!int_item(out_items[i], &outs[i]) || !int_item(e, &exp))
            goto fallback;
        differs[i] = !same_item(&outs[i], &exp);
        count += differs[i];
    }
    if (n_ev) {
        extra = 2;
        if (!(code_items = items_of(r.ev_code, n_ev)) || !(arg_items = items_of(r.ev_arg, n_ev)))
            goto fallback;
        for (i = 0; i < n_ev; i++) {
            if (!int_item(code_items[i], &ev_c[i]) || !int_item(arg_items[i], &ev_a[i]))
                goto fallback;
        }
    }
    else {
        extra = count ? 1 : 0;
    }

    size = 1 + 1 + item_len(&head_dt); /* array head (at most 9 fields), kind, dt */
    if (is_decision)
        size += item_len(&seq_it);
    else
        size += kind == EV_TICK ? 1 : 2; /* 3, or the head of [2, values] and the 2 */
    if (has_values) {
        size += head_len((uint64_t)n_vals);
        for (i = 0; i < n_vals; i++)
            size += item_len(&vals[i]);
        if (pairs) {
            for (i = 0; i < n_vals; i++)
                size += 1 + head_len((uint64_t)val_idx[i]); /* [2-array, index] */
        }
    }
    size += item_len(&vr_it) + item_len(&rule_it) + item_len(&margin_it);
    if (extra) {
        size += head_len((uint64_t)count);
        for (i = 0; i < n_ch; i++) {
            if (differs[i])
                size += 1 + head_len((uint64_t)i) + item_len(&outs[i]);
        }
    }
    if (extra == 2) {
        size += head_len((uint64_t)n_ev);
        for (i = 0; i < n_ev; i++)
            size += 1 + item_len(&ev_c[i]) + item_len(&ev_a[i]);
    }
    if (size > PyByteArray_GET_SIZE(r.buf))
        goto fallback; /* the Python code grows the buffer */

    /* -- (d) write */
    start = p = (unsigned char *)PyByteArray_AS_STRING(r.buf);
    p = put_head(p, 4, (uint64_t)((is_decision ? 7 : 6) + extra));
    p = put_head(p, 0, is_decision ? K_DECISION : K_EVENT);
    p = put_item(p, &head_dt);
    if (is_decision) {
        p = put_item(p, &seq_it);
    }
    else if (kind == EV_TICK) {
        p = put_head(p, 0, EV_TICK);
    }
    else {
        p = put_head(p, 4, 2);
        p = put_head(p, 0, EV_TELEMETRY);
    }
    if (has_values) {
        p = put_head(p, 4, (uint64_t)n_vals);
        for (i = 0; i < n_vals; i++) {
            if (pairs) {
                p = put_head(p, 4, 2);
                p = put_head(p, 0, (uint64_t)val_idx[i]);
            }
            p = put_item(p, &vals[i]);
        }
    }
    p = put_item(p, &vr_it);
    p = put_item(p, &rule_it);
    p = put_item(p, &margin_it);
    if (extra) {
        p = put_head(p, 4, (uint64_t)count);
        for (i = 0; i < n_ch; i++) {
            if (differs[i]) {
                p = put_head(p, 4, 2);
                p = put_head(p, 0, (uint64_t)i);
                p = put_item(p, &outs[i]);
            }
        }
    }
    if (extra == 2) {
        p = put_head(p, 4, (uint64_t)n_ev);
        for (i = 0; i < n_ev; i++) {
            p = put_head(p, 4, 2);
            p = put_item(p, &ev_c[i]);
            p = put_item(p, &ev_a[i]);
        }
    }
    if (p - start != size) {
        PyErr_SetString(PyExc_SystemError, "edgegov._recenc: record size mismatch");
        result = NULL;
        goto done;
    }

    /* -- (d) the encoder's new state, as the Python code leaves it: prev_out[i] = out[i]
     * first (the old items are released last: releasing one could run Python code), then
     * n, t and seq_ref */
    for (i = 0; i < n_ch; i++) {
        PyObject *v = out_items[i];
        olds[i] = prev_items[i];
        Py_INCREF(v);
        prev_items[i] = v;
    }
    {
        PyObject *nobj = PyLong_FromSsize_t(size);
        if (nobj == NULL || PyObject_SetAttr(enc, s_n, nobj) < 0
            || PyObject_SetAttr(enc, s_t, now_ms) < 0
            || (is_decision && PyObject_SetAttr(enc, s_seq_ref, r.seq) < 0))
            result = NULL;
        else
            result = Py_True;
        Py_XDECREF(nobj);
    }
    for (i = 0; i < n_ch; i++)
        Py_DECREF(olds[i]);
    goto done;

fallback:
    result = Py_False;
done:
    Py_XINCREF(result);
    release(&r);
    return result;
}

static PyObject *
recenc_decision(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "decision(enc, cmd, now_ms, d)");
        return NULL;
    }
    return encode(args[0], args[1], args[2], args[3], 1);
}

static PyObject *
recenc_event(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "event(enc, ev, now_ms, d)");
        return NULL;
    }
    return encode(args[0], args[1], args[2], args[3], 0);
}


/* ``loads(data)``: ``edgegov.core.cbor.loads`` for bytes it accepts, building the same
 * objects (int, bytes, str, list, dict with ascending non-negative int keys, True, False,
 * None). For anything it would reject (or that it would not decode here: nesting deeper
 * than the Python decoder allows, input that is not bytes) it returns ``None`` without
 * raising, and the caller runs the Python decoder, which raises its exact error. */

#define CBOR_MAX_DEPTH 16
#define DEC_FAIL ((PyObject *)1) /* not decoded here: let the Python code say why */

static int
dec_arg(const unsigned char *d, Py_ssize_t *pos, Py_ssize_t end, unsigned info, uint64_t *out)
{
    Py_ssize_t size, i;
    uint64_t n = 0;

    if (info < 24) {
        *out = info;
        return 0;
    }
    if (info > 27)
        return -1;
    size = (Py_ssize_t)1 << (info - 24);
    if (*pos + size > end)
        return -1;
    for (i = 0; i < size; i++)
        n = (n << 8) | d[*pos + i];
    if (n < (size == 1 ? 24 : (uint64_t)1 << (4 * size)))
        return -1;
    *pos += size;
    *out = n;
    return 0;
}

static PyObject *
dec_item(const unsigned char *d, Py_ssize_t *pos, Py_ssize_t end, int depth)
{
    unsigned ib, major, info;
    uint64_t n;
    Py_ssize_t i;
    PyObject *obj, *item;

    if (depth > CBOR_MAX_DEPTH || *pos >= end)
        return DEC_FAIL;
    ib = d[*pos];
    major = ib >> 5;
    info = ib & 0x1F;
    *pos += 1;
    if (major == 7) {
        if (info == 20)
            Py_RETURN_FALSE;
        if (info == 21)
            Py_RETURN_TRUE;
        if (info == 22)
            Py_RETURN_NONE;
        return DEC_FAIL;
    }
    if (major == 6 || dec_arg(d, pos, end, info, &n) < 0)
        return DEC_FAIL;
    switch (major) {
    case 0:
        return PyLong_FromUnsignedLongLong(n);
    case 1:
        if (n <= (uint64_t)INT64_MAX)
            return PyLong_FromLongLong(-1 - (long long)n);
        obj = PyLong_FromUnsignedLongLong(n);
        if (obj == NULL)
            return NULL;
        item = PyNumber_Invert(obj); /* ~n == -1 - n */
        Py_DECREF(obj);
        return item;
    case 2:
    case 3:
        if (n > (uint64_t)(end - *pos))
            return DEC_FAIL;
        if (major == 2)
            obj = PyBytes_FromStringAndSize((const char *)d + *pos, (Py_ssize_t)n);
        else {
            obj = PyUnicode_DecodeUTF8((const char *)d + *pos, (Py_ssize_t)n, "strict");
            if (obj == NULL) {
                if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
                    return NULL;
                PyErr_Clear();
                return DEC_FAIL;
            }
        }
        if (obj != NULL)
            *pos += (Py_ssize_t)n;
        return obj;
    case 4:
        if (n > (uint64_t)(end - *pos))
            return DEC_FAIL;
        obj = PyList_New((Py_ssize_t)n);
        if (obj == NULL)
            return NULL;
        for (i = 0; i < (Py_ssize_t)n; i++) {
            item = dec_item(d, pos, end, depth + 1);
            if (item == NULL || item == DEC_FAIL) {
                Py_DECREF(obj);
                return item;
            }
            PyList_SET_ITEM(obj, i, item);
        }
        return obj;
    case 5: {
        uint64_t last = 0, k;
        int first = 1;
        PyObject *key;

        if (n > (uint64_t)(end - *pos) / 2)
            return DEC_FAIL;
        obj = PyDict_New();
        if (obj == NULL)
            return NULL;
        for (i = 0; i < (Py_ssize_t)n; i++) {
            if (*pos >= end || d[*pos] >> 5 != 0) {
                Py_DECREF(obj);
                return DEC_FAIL;
            }
            *pos += 1;
            if (dec_arg(d, pos, end, d[*pos - 1] & 0x1F, &k) < 0 || (!first && k <= last)) {
                Py_DECREF(obj);
                return DEC_FAIL;
            }
            first = 0;
            last = k;
            item = dec_item(d, pos, end, depth + 1);
            if (item == NULL || item == DEC_FAIL) {
                Py_DECREF(obj);
                return item;
            }
            key = PyLong_FromUnsignedLongLong(k);
            if (key == NULL || PyDict_SetItem(obj, key, item) < 0) {
                Py_XDECREF(key);
                Py_DECREF(item);
                Py_DECREF(obj);
                return NULL;
            }
            Py_DECREF(key);
            Py_DECREF(item);
        }
        return obj;
    }
    default:
        return DEC_FAIL;
    }
}

static PyObject *
recenc_loads(PyObject *module, PyObject *data)
{
    Py_buffer view;
    Py_ssize_t pos = 0;
    PyObject *value;

    (void)module;
    if (!PyBytes_Check(data) && !PyByteArray_Check(data) && !PyMemoryView_Check(data))
        Py_RETURN_NONE;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear(); /* a view that is not contiguous: the Python code reads it */
        Py_RETURN_NONE;
    }
    value = dec_item((const unsigned char *)view.buf, &pos, view.len, 0);
    PyBuffer_Release(&view);
    if (value == DEC_FAIL)
        Py_RETURN_NONE;
    if (value != NULL && pos != view.len) {
        Py_DECREF(value);
        Py_RETURN_NONE;
    }
    return value;
}

/* ``walk_frames(image, start, block_size, seq, seed)``: the frame walk of one sector of a
 * dump (bytes), exactly ``edgegov.host.lineage_store.walk_frames`` (the pure-Python code,
 * which stays the reference: ``tests/test_dump_read_once.py`` checks both agree). A frame
 * is accepted while it lies inside the sector, its length is not erased, its seq is the
 * next one and its commit word is the CRC-32 of head and payload seeded with ``seed``.
 * Returns ``(seq, off, records, offsets)``: the seq and in-sector offset after the last
 * accepted frame, ``[(seq, payload)]`` and ``{seq: frame offset in the image}``. */

#define FRAME_HEADER_SIZE 28 /* the sector header; frames start here */
#define FRAME_HEAD 6
#define FRAME_CRC 4
#define ERASED_LEN 0xFFFF

static uint32_t crc_table[8][256];

static void
crc_init(void)
{
    uint32_t c;
    int i, k;

    for (i = 0; i < 256; i++) {
        c = (uint32_t)i;
        for (k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[0][i] = c;
    }
    for (i = 0; i < 256; i++)
        for (k = 1; k < 8; k++)
            crc_table[k][i] = (crc_table[k - 1][i] >> 8) ^ crc_table[0][crc_table[k - 1][i] & 0xFF];
}

static uint32_t
le32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* binascii.crc32(data, crc): the zlib CRC-32, eight bytes a step. */
static uint32_t
crc32_of(uint32_t crc, const unsigned char *p, Py_ssize_t n)
{
    uint32_t a, b;

    crc = ~crc;
    while (n >= 8) {
        a = crc ^ le32(p);
        b = le32(p + 4);
        crc = crc_table[7][a & 0xFF] ^ crc_table[6][(a >> 8) & 0xFF]
              ^ crc_table[5][(a >> 16) & 0xFF] ^ crc_table[4][a >> 24]
              ^ crc_table[3][b & 0xFF] ^ crc_table[2][(b >> 8) & 0xFF]
              ^ crc_table[1][(b >> 16) & 0xFF] ^ crc_table[0][b >> 24];
        p += 8;
        n -= 8;
    }
    while (n-- > 0)
        crc = crc_table[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

static int
keep_frame(PyObject *records, PyObject *offsets, uint32_t seq, const unsigned char *payload,
           Py_ssize_t n, Py_ssize_t at)
{
    PyObject *key, *data, *pair, *where;
    int failed;

    key = PyLong_FromUnsignedLong(seq);
    data = PyBytes_FromStringAndSize((const char *)payload, n);
    where = PyLong_FromSsize_t(at);
    if (key == NULL || data == NULL || where == NULL) {
        Py_XDECREF(key);
        Py_XDECREF(data);
        Py_XDECREF(where);
        return -1;
    }
    failed = PyDict_SetItem(offsets, key, where) < 0;
    Py_DECREF(where);
    pair = failed ? NULL : PyTuple_New(2);
    if (pair == NULL) {
        Py_DECREF(key);
        Py_DECREF(data);
        return -1;
    }
    PyTuple_SET_ITEM(pair, 0, key);
    PyTuple_SET_ITEM(pair, 1, data);
    /* An int and bytes can hold no reference cycle: the collector would untrack this
     * pair at its first pass anyway; untracked now, a long dump costs it no passes. */
    PyObject_GC_UnTrack(pair);
    failed = PyList_Append(records, pair) < 0;
    Py_DECREF(pair);
    return failed ? -1 : 0;
}

static PyObject *
recenc_walk_frames(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    const unsigned char *d;
    Py_ssize_t start, block_size, last, p, q, n;
    unsigned long seq_in, seed_in;
    uint32_t seq, seed;
    PyObject *records, *offsets;

    (void)module;
    if (nargs != 5 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "walk_frames(image: bytes, start, block_size, seq, seed)");
        return NULL;
    }
    start = PyLong_AsSsize_t(args[1]);
    block_size = PyLong_AsSsize_t(args[2]);
    seq_in = PyLong_AsUnsignedLong(args[3]);
    seed_in = PyLong_AsUnsignedLong(args[4]);
    if (PyErr_Occurred())
        return NULL;
    if (start < 0 || block_size < FRAME_HEADER_SIZE || start > PyBytes_GET_SIZE(args[0]) - block_size
        || seq_in > 0xFFFFFFFFul || seed_in > 0xFFFFFFFFul) {
        PyErr_SetString(PyExc_ValueError, "walk_frames: not a sector of the image");
        return NULL;
    }
    seq = (uint32_t)seq_in;
    seed = (uint32_t)seed_in;
    d = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    records = PyList_New(0);
    offsets = PyDict_New();
    if (records == NULL || offsets == NULL)
        goto fail;
    last = start + block_size - FRAME_CRC; /* where a frame's CRC word may start at the latest */
    p = start + FRAME_HEADER_SIZE;
    while (p + FRAME_HEAD <= last) {
        n = (Py_ssize_t)d[p] | ((Py_ssize_t)d[p + 1] << 8);
        q = p + FRAME_HEAD + n;
        if (q > last || n == ERASED_LEN || le32(d + p + 2) != seq
            || le32(d + q) != crc32_of(seed, d + p, FRAME_HEAD + n))
            break;
        if (keep_frame(records, offsets, seq, d + p + FRAME_HEAD, n, p) < 0)
            goto fail;
        seq = seq == 0xFFFFFFFFu ? 0 : seq + 1;
        p = q + FRAME_CRC;
    }
    return Py_BuildValue("(knNN)", (unsigned long)seq, p - start, records, offsets);
fail:
    Py_XDECREF(records);
    Py_XDECREF(offsets);
    return NULL;
}

static PyMethodDef recenc_methods[] = {
    {"loads", (PyCFunction)recenc_loads, METH_O,
     "loads(data) -> value or None: edgegov.core.cbor.loads for bytes it accepts; None "
     "(the value None is never a record) when the Python decoder must run and say why."},
    {"decision", (PyCFunction)(void (*)(void))recenc_decision, METH_FASTCALL,
     "decision(enc, cmd, now_ms, d) -> bool: Encoder.decision for the common case; False "
     "(nothing changed) when the Python code must do it."},
    {"event", (PyCFunction)(void (*)(void))recenc_event, METH_FASTCALL,
     "event(enc, ev, now_ms, d) -> bool: Encoder.event for a tick or telemetry; False "
     "(nothing changed) when the Python code must do it."},
    {"walk_frames", (PyCFunction)(void (*)(void))recenc_walk_frames, METH_FASTCALL,
     "walk_frames(image, start, block_size, seq, seed) -> (seq, off, records, offsets): "
     "edgegov.host.lineage_store.walk_frames, in C."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef recenc_module = {
    PyModuleDef_HEAD_INIT,
    "edgegov._recenc",
    "Optional C accelerator for edgegov.core.record (DECISION and EVENT records).\n\n"
    "PURE is True when EDGEGOV_PURE_RECORDS was set (non-empty, not 0) at import: the\n"
    "record module then keeps to the pure-Python encoder.",
    -1,
    recenc_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

static int
intern(PyObject **slot, const char *name)
{
    *slot = PyUnicode_InternFromString(name);
    return *slot == NULL ? -1 : 0;
}

PyMODINIT_FUNC
PyInit__recenc(void)
{
    PyObject *m;
    const char *pure = getenv("EDGEGOV_PURE_RECORDS");

    if (intern(&s_buf, "buf") || intern(&s_n, "n") || intern(&s_t, "t")
        || intern(&s_seq_ref, "seq_ref") || intern(&s_prev_out, "prev_out")
        || intern(&s_env, "env") || intern(&s_ch_names, "ch_names")
        || intern(&s_in_names, "in_names") || intern(&s_seq, "seq")
        || intern(&s_values, "values") || intern(&s_verdict, "verdict")
        || intern(&s_reason, "reason") || intern(&s_rule, "rule")
        || intern(&s_margin, "margin") || intern(&s_output, "output")
        || intern(&s_proposed, "proposed") || intern(&s_n_events, "n_events")
        || intern(&s_ev_code, "ev_code") || intern(&s_ev_arg, "ev_arg")
        || intern(&s_kind, "kind") || intern(&s_ch_index, "ch_index")
        || intern(&s_in_index, "in_index"))
        return NULL;
    crc_init();
    m = PyModule_Create(&recenc_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "PURE",
                              (pure != NULL && pure[0] != '\0' && strcmp(pure, "0") != 0)
                                  ? Py_True
                                  : Py_False)
        < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
