/* The sink writer's line encoder: a batch of published records -> one JSON line per record.
 *
 * The writer's hot path (feedops/worker/encode.py builds the plan and documents the line).
 * It runs a plan of steps over every record of a contiguous buffer of records:
 *
 *   (LIT, text)                          write text
 *   (FLOAT, offset, prefix)              prefix, then the little-endian double at offset: null when it has no
 *                                        value (not -DBL_MAX < v < DBL_MAX: CTP's marker, NaN, the infinities)
 *   (INT, offset, prefix)                prefix, then the little-endian int32 at offset
 *   (VOLUME, offset, prefix, price)      as INT, but null when the double at offset price has no value
 *   (HEAD,)                              the head text of the record (see below)
 *   (TEXT, offset, size)                 a cached text keyed by the size bytes at offset
 *
 * HEAD and TEXT look the record's bytes up in a Cache (below; one of each per process, kept by
 * encode.py): a hit makes no object; a miss calls back into Python, which builds the value
 * (GB18030 decoding and JSON string escaping stay there), and a cache that holds cache_max
 * keys starts afresh. The head's
 * value is a tuple (text, instrument UTF-8, exchange, trading day), whose last three items go
 * into the row.
 *
 * A double is written as the shortest text that reads back as the same double, the text
 * orjson writes: a value M / 10^k (M < 10^15, k <= 9) that 1e-4 <= |v| < 1e15 holds is
 * written here, in decimal notation; any other double is handed to float_text (orjson.dumps)
 * and its text copied. tests/unit/test_worker_encode.py compares the two on random doubles.
 *
 * Returns the list of rows (line, instrument, exchange, trading day, exchange_ts, recv_ts),
 * the line without its newline; or, in text mode, (text, ends, instruments, exchanges, days): every
 * line followed by a newline in one bytes object, the end of each line (int64, its newline left out),
 * and the instrument (UTF-8), exchange and trading day of each record. The GIL is held throughout
 * (the callbacks need it).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

enum { OP_LIT = 0, OP_FLOAT = 1, OP_INT = 2, OP_VOLUME = 3, OP_HEAD = 4, OP_TEXT = 5 };

typedef struct {
    int kind;
    Py_ssize_t offset;
    Py_ssize_t size;     /* TEXT: the key's size */
    Py_ssize_t price;    /* VOLUME: the offset of its price */
    const char *text;    /* LIT: the text; FLOAT, INT, VOLUME: the prefix */
    Py_ssize_t text_len;
    char pad[32];        /* the text again, zero-padded, when it is at most SHORT bytes: see put_short */
} Step;

/* A text of at most SHORT bytes is copied as SHORT bytes, one fixed-size move instead of a call to memcpy;
   the bytes past it are overwritten by what follows or cut off at the end. Every step's reserve (48 bytes
   beyond its prefix, see rows) leaves room for that. */
#define SHORT 32

typedef struct {
    char *data;
    Py_ssize_t len;
    Py_ssize_t cap;
    PyObject *owner;  /* the bytes object data lives in (text mode), or NULL: PyMem memory */
} Buf;

static int buf_reserve(Buf *b, Py_ssize_t more) {
    if (b->len + more <= b->cap)
        return 0;
    Py_ssize_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more)
        cap *= 2;
    if (b->owner != NULL) {  /* grown in place where the allocator can; the object is ours alone */
        if (_PyBytes_Resize(&b->owner, cap) < 0) {  /* (it is freed and NULL then) */
            b->data = NULL;
            return -1;
        }
        b->data = PyBytes_AS_STRING(b->owner);
        b->cap = cap;
        return 0;
    }
    char *data = PyMem_Realloc(b->data, (size_t)cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

static inline void put(Buf *b, const char *s, Py_ssize_t n) {
    memcpy(b->data + b->len, s, (size_t)n);
    b->len += n;
}

/* n <= SHORT bytes from src, which has SHORT readable bytes */
static inline void put_short(Buf *b, const char *src, Py_ssize_t n) {
    memcpy(b->data + b->len, src, SHORT);
    b->len += n;
}

static inline void put_text(Buf *b, const Step *s) {
    if (s->text_len <= SHORT)
        put_short(b, s->pad, s->text_len);
    else
        put(b, s->text, s->text_len);
}

static inline double read_double(const char *p) {
    double v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline int32_t read_int32(const char *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline int has_value(double v) {
    return -DBL_MAX < v && v < DBL_MAX;  /* false for +-DBL_MAX, NaN and the infinities */
}

/* Digits of u, written backwards from end; returns where they start. */
static inline char *digits_back(char *end, uint64_t u) {
    do {
        *--end = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    return end;
}

static void put_int(Buf *b, int64_t v) {
    char tmp[24 + SHORT] = {0};  /* the digits end at tmp + 24; SHORT bytes from their start are readable */
    char *end = tmp + 24;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    char *start = digits_back(end, u);
    if (v < 0)
        *--start = '-';
    put_short(b, start, end - start);
}

static const double POW10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9};
#define MAX_DECIMALS 9

/* The shortest round-trip text of v when it is M / 10^k with M < 10^15 and 1e-4 <= |v| < 1e15 (or zero);
   returns its length, 0 when v is not such a value. The text is written to end at tmp + 40 (tmp holds
   40 + SHORT bytes, so SHORT bytes from its start are readable) and *start is where it begins.
   Why it is the shortest: (double)M / 10^k is the correctly rounded quotient of two exact values, so the test
   below proves that the decimal M / 10^k reads back as v; two different decimals of at most 15 significant
   digits are further apart than any two numbers that read back as one double, so no shorter text does. */
static Py_ssize_t fast_double(double v, char *tmp, char **start_out) {
    char *end = tmp + 40;
    if (v == 0.0) {
        char *start = end - 3;
        memcpy(start, "0.0", 3);
        if (signbit(v))
            *--start = '-';
        *start_out = start;
        return end - start;
    }
    double a = fabs(v);
    if (!(a >= 1e-4 && a < 1e15))
        return 0;
    for (int k = 0; k <= MAX_DECIMALS; k++) {
        double m = a * POW10[k];
        if (m >= 1e15)
            return 0;
        uint64_t M = (uint64_t)m;  /* 0 <= m < 1e15: exact when m is a whole number */
        if ((double)M != m)
            continue;
        if ((double)M / POW10[k] != a)
            continue;
        while (k > 0 && M % 10 == 0) {
            M /= 10;
            k--;
        }
        char *start;
        if (k == 0) {
            char *q = end;
            *--q = '0';
            *--q = '.';
            start = digits_back(q, M);
        } else {
            uint64_t scale = 1;
            for (int i = 0; i < k; i++)
                scale *= 10;
            uint64_t frac = M % scale;
            char *q = end;
            for (int i = 0; i < k; i++) {
                *--q = (char)('0' + frac % 10);
                frac /= 10;
            }
            *--q = '.';
            start = digits_back(q, M / scale);
        }
        if (v < 0)
            *--start = '-';
        *start_out = start;
        return end - start;
    }
    return 0;
}

/* reserve: what the rest of the record still needs, kept free after a text of float_text's (any length) */
static int put_double(Buf *b, double v, PyObject *float_text, Py_ssize_t reserve) {
    char tmp[40 + SHORT] = {0}, *start;
    Py_ssize_t n = fast_double(v, tmp, &start);
    if (n) {
        put_short(b, start, n);
        return 0;
    }
    PyObject *f = PyFloat_FromDouble(v);
    if (f == NULL)
        return -1;
    PyObject *text = PyObject_CallOneArg(float_text, f);
    Py_DECREF(f);
    if (text == NULL)
        return -1;
    if (!PyBytes_Check(text)) {
        Py_DECREF(text);
        PyErr_SetString(PyExc_TypeError, "float_text must return bytes");
        return -1;
    }
    Py_ssize_t len = PyBytes_GET_SIZE(text);
    int rc = buf_reserve(b, len + reserve);
    if (rc == 0)
        put(b, PyBytes_AS_STRING(text), len);
    Py_DECREF(text);
    return rc;
}

typedef struct Cache Cache;
static PyTypeObject CacheType;
static int cache_check(PyObject *cache);
static PyObject *cache_lookup(Cache *c, PyObject *build, const char *key, Py_ssize_t len, Py_ssize_t cap);

static int parse_plan(PyObject *plan, Step **steps_out, Py_ssize_t *count_out) {
    if (!PyTuple_Check(plan)) {
        PyErr_SetString(PyExc_TypeError, "plan must be a tuple of steps");
        return -1;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(plan);
    Step *steps = PyMem_Calloc((size_t)(count ? count : 1), sizeof(Step));
    if (steps == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *t = PyTuple_GET_ITEM(plan, i);
        Step *s = &steps[i];
        PyObject *text = NULL;
        int ok;
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) < 1) {
            ok = 0;
        } else {
            s->kind = (int)PyLong_AsLong(PyTuple_GET_ITEM(t, 0));
            switch (s->kind) {
            case OP_LIT:
                ok = PyArg_ParseTuple(t, "iS", &s->kind, &text);
                break;
            case OP_FLOAT:
            case OP_INT:
                ok = PyArg_ParseTuple(t, "inS", &s->kind, &s->offset, &text);
                break;
            case OP_VOLUME:
                ok = PyArg_ParseTuple(t, "inSn", &s->kind, &s->offset, &text, &s->price);
                break;
            case OP_HEAD:
                ok = PyArg_ParseTuple(t, "i", &s->kind);
                break;
            case OP_TEXT:
                ok = PyArg_ParseTuple(t, "inn", &s->kind, &s->offset, &s->size);
                break;
            default:
                ok = 0;
            }
        }
        if (!ok) {
            PyMem_Free(steps);
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_ValueError, "plan step %zd is not a known step", i);
            return -1;
        }
        if (text != NULL) {  /* the plan tuple keeps the bytes alive for the call */
            s->text = PyBytes_AS_STRING(text);
            s->text_len = PyBytes_GET_SIZE(text);
            if (s->text_len <= SHORT)
                memcpy(s->pad, s->text, (size_t)s->text_len);  /* (calloc'd: the rest is zero) */
        }
    }
    *steps_out = steps;
    *count_out = count;
    return 0;
}

static PyObject *rows(PyObject *module, PyObject *args) {
    Py_buffer view;
    PyObject *plan, *head_cache, *build_head, *text_cache, *build_text, *float_text;
    Py_ssize_t itemsize, head_offset, head_size, exchange_ts_offset, recv_ts_offset, cache_max;
    int text_mode = 0;
    if (!PyArg_ParseTuple(args, "y*nOnnOOOOOnnn|p:rows", &view, &itemsize, &plan, &head_offset, &head_size,
                          &head_cache, &build_head, &text_cache, &build_text, &float_text, &exchange_ts_offset,
                          &recv_ts_offset, &cache_max, &text_mode))
        return NULL;
    Step *steps = NULL;
    Py_ssize_t nsteps = 0;
    PyObject *out = NULL;
    PyObject *head = NULL;  /* the record's head tuple, a reference held until its row is built */
    PyObject *ends = NULL, *columns[3] = {NULL, NULL, NULL};  /* text mode: instruments, exchanges, days */
    Buf b = {NULL, 0, 0, NULL};
    if (cache_check(head_cache) < 0 || cache_check(text_cache) < 0)
        goto done;
    if (itemsize <= 0 || view.len % itemsize != 0) {
        PyErr_SetString(PyExc_ValueError, "the buffer is not a whole number of records");
        goto done;
    }
    if (head_offset < 0 || head_offset + head_size > itemsize || exchange_ts_offset + 8 > itemsize ||
        recv_ts_offset + 8 > itemsize || cache_max < 1) {
        PyErr_SetString(PyExc_ValueError, "an offset lies outside the record");
        goto done;
    }
    if (parse_plan(plan, &steps, &nsteps) < 0)
        goto done;
    Py_ssize_t fixed = 0;  /* the most any record can need, but for cached texts and float_text's */
    for (Py_ssize_t i = 0; i < nsteps; i++) {
        Step *s = &steps[i];
        Py_ssize_t end = s->offset + (s->kind == OP_TEXT ? s->size : s->kind == OP_HEAD ? 0 : 8);
        if (s->offset < 0 || end > itemsize || (s->kind == OP_VOLUME && (s->price < 0 || s->price + 8 > itemsize))) {
            PyErr_Format(PyExc_ValueError, "plan step %zd reads outside the record", i);
            goto done;
        }
        fixed += s->text_len + 48;
    }
    fixed += 1;  /* text mode: the newline */
    Py_ssize_t count = view.len / itemsize;
    int64_t *line_ends = NULL;
    if (text_mode) {
        b.owner = PyBytes_FromStringAndSize(NULL, count * 1024 + fixed);
        ends = PyBytes_FromStringAndSize(NULL, count * (Py_ssize_t)sizeof(int64_t));
        for (int j = 0; j < 3; j++)
            columns[j] = PyList_New(count);
        if (b.owner == NULL || ends == NULL || !columns[0] || !columns[1] || !columns[2])
            goto fail;
        b.data = PyBytes_AS_STRING(b.owner);
        b.cap = count * 1024 + fixed;
        line_ends = (int64_t *)PyBytes_AS_STRING(ends);
    } else {
        out = PyList_New(count);
        if (out == NULL)
            goto done;
    }
    const char *base = view.buf;
    for (Py_ssize_t r = 0; r < count; r++) {
        const char *rec = base + r * itemsize;
        if (!text_mode)
            b.len = 0;
        if (buf_reserve(&b, fixed) < 0)
            goto fail;
        for (Py_ssize_t i = 0; i < nsteps; i++) {
            Step *s = &steps[i];
            switch (s->kind) {
            case OP_LIT:
                put_text(&b, s);
                break;
            case OP_FLOAT: {
                double v = read_double(rec + s->offset);
                put_text(&b, s);
                if (!has_value(v))
                    put(&b, "null", 4);
                else if (put_double(&b, v, float_text, fixed) < 0)
                    goto fail;
                break;
            }
            case OP_INT:
                put_text(&b, s);
                put_int(&b, read_int32(rec + s->offset));
                break;
            case OP_VOLUME:
                put_text(&b, s);
                if (has_value(read_double(rec + s->price)))
                    put_int(&b, read_int32(rec + s->offset));
                else
                    put(&b, "null", 4);
                break;
            case OP_HEAD:
            case OP_TEXT: {
                PyObject *value = s->kind == OP_HEAD
                    ? cache_lookup((Cache *)head_cache, build_head, rec + head_offset, head_size, cache_max)
                    : cache_lookup((Cache *)text_cache, build_text, rec + s->offset, s->size, cache_max);
                if (value == NULL)
                    goto fail;
                PyObject *text = value;
                if (s->kind == OP_HEAD) {
                    if (!PyTuple_Check(value) || PyTuple_GET_SIZE(value) != 4) {
                        PyErr_SetString(PyExc_TypeError, "build_head must return (text, instrument, exchange, day)");
                        goto fail;
                    }
                    Py_XDECREF(head);  /* (a plan has one HEAD step; a second one replaces the first) */
                    head = value;
                    Py_INCREF(head);  /* held until the row is built: a callback may empty the cache */
                    text = PyTuple_GET_ITEM(value, 0);
                }
                if (!PyBytes_Check(text)) {
                    PyErr_SetString(PyExc_TypeError, "a cached text must be bytes");
                    goto fail;
                }
                Py_ssize_t len = PyBytes_GET_SIZE(text);
                /* the reserve may move the buffer, never the cached value (the cache holds it) */
                if (buf_reserve(&b, len + fixed) < 0)
                    goto fail;
                put(&b, PyBytes_AS_STRING(text), len);
                break;
            }
            }
        }
        if (head == NULL) {
            PyErr_SetString(PyExc_ValueError, "the plan has no HEAD step");
            goto fail;
        }
        if (text_mode) {
            line_ends[r] = b.len;
            put(&b, "\n", 1);
            for (int j = 0; j < 3; j++) {
                PyObject *item = PyTuple_GET_ITEM(head, j + 1);
                Py_INCREF(item);
                PyList_SET_ITEM(columns[j], r, item);
            }
            Py_CLEAR(head);
            continue;
        }
        PyObject *row = PyTuple_New(6);
        if (row == NULL)
            goto fail;
        PyList_SET_ITEM(out, r, row);
        PyObject *line = PyBytes_FromStringAndSize(b.data, b.len);
        PyObject *ets = PyFloat_FromDouble(read_double(rec + exchange_ts_offset));
        PyObject *rts = PyFloat_FromDouble(read_double(rec + recv_ts_offset));
        if (line == NULL || ets == NULL || rts == NULL) {
            Py_XDECREF(line);
            Py_XDECREF(ets);
            Py_XDECREF(rts);
            goto fail;
        }
        PyTuple_SET_ITEM(row, 0, line);
        for (int j = 1; j < 4; j++) {
            PyObject *item = PyTuple_GET_ITEM(head, j);
            Py_INCREF(item);
            PyTuple_SET_ITEM(row, j, item);
        }
        Py_CLEAR(head);
        PyTuple_SET_ITEM(row, 4, ets);
        PyTuple_SET_ITEM(row, 5, rts);
    }
    if (text_mode) {
        if (_PyBytes_Resize(&b.owner, b.len) < 0)
            goto fail;
        out = PyTuple_Pack(5, b.owner, ends, columns[0], columns[1], columns[2]);
    }
    goto done;
fail:
    Py_XDECREF(head);
    Py_CLEAR(out);
done:
    if (b.owner == NULL)
        PyMem_Free(b.data);
    Py_XDECREF(b.owner);
    Py_XDECREF(ends);
    for (int j = 0; j < 3; j++)
        Py_XDECREF(columns[j]);
    PyMem_Free(steps);
    PyBuffer_Release(&view);
    return out;
}

/* ================================================================== the pipeline's batch helpers
 *
 * Used by the worker's pipeline thread (feedops/worker/ticks.py and dedupe.py), over the bytes of a
 * batch of structs; none calls back into Python or releases the GIL, so each call is atomic for the
 * other Python threads.
 */

/* A hash of n bytes, continuing from h: eight bytes at a time (multiply, fold the high bits down), then the
   rest byte by byte (FNV-1a); hash_finish mixes every bit into the low ones the tables index by. */
static inline uint64_t hash_more(uint64_t h, const char *p, Py_ssize_t n) {
    uint64_t word;
    for (; n >= 8; p += 8, n -= 8) {
        memcpy(&word, p, 8);
        h = (h ^ word) * 1099511628211ULL;
        h ^= h >> 29;
    }
    for (; n > 0; p++, n--)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return h;
}

static inline uint64_t hash_finish(uint64_t h) {  /* MurmurHash3's 64-bit finaliser */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    return h ^ (h >> 33);
}
#define HASH_START 1469598103934665603ULL

/* A buffer of n whole records of itemsize bytes whose range [offset, offset + size) lies inside a record. */
static int check_records(Py_buffer *view, Py_ssize_t itemsize, Py_ssize_t offset, Py_ssize_t size) {
    if (itemsize <= 0 || view->len % itemsize != 0) {
        PyErr_SetString(PyExc_ValueError, "the buffer is not a whole number of records");
        return -1;
    }
    if (offset < 0 || size < 0 || offset + size > itemsize) {
        PyErr_SetString(PyExc_ValueError, "a field lies outside the record");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ IdTable */
typedef struct {
    uint64_t hash;
    Py_ssize_t at;   /* where its bytes are in the arena */
    Py_ssize_t len;
} IdKey;

typedef struct {
    PyObject_HEAD
    IdKey *keys;        /* by id */
    Py_ssize_t count, cap;
    Py_ssize_t *slots;  /* open addressing: id + 1, 0 for an empty slot; nslots a power of two > 2 x count */
    Py_ssize_t nslots;
    char *arena;
    Py_ssize_t arena_len, arena_cap;
} IdTable;

/* The id of key, or -1 with *slot the empty slot where it would go. */
static Py_ssize_t idt_find(IdTable *t, const char *key, Py_ssize_t len, uint64_t h, Py_ssize_t *slot) {
    size_t mask = (size_t)t->nslots - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        Py_ssize_t s = t->slots[i];
        if (s == 0) {
            *slot = (Py_ssize_t)i;
            return -1;
        }
        IdKey *k = &t->keys[s - 1];
        if (k->hash == h && k->len == len && memcmp(t->arena + k->at, key, (size_t)len) == 0)
            return s - 1;
    }
}

static int idt_grow(IdTable *t) {
    Py_ssize_t nslots = t->nslots ? 2 * t->nslots : 1024;
    Py_ssize_t *slots = PyMem_Calloc((size_t)nslots, sizeof *slots);
    if (slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    size_t mask = (size_t)nslots - 1;
    for (Py_ssize_t id = 0; id < t->count; id++) {
        size_t i = (size_t)t->keys[id].hash & mask;
        while (slots[i])
            i = (i + 1) & mask;
        slots[i] = id + 1;
    }
    PyMem_Free(t->slots);
    t->slots = slots;
    t->nslots = nslots;
    return 0;
}

/* The id of key, a new one (the next) when it is not known; -1 with an exception set on failure. */
static Py_ssize_t idt_add(IdTable *t, const char *key, Py_ssize_t len) {
    uint64_t h = hash_finish(hash_more(HASH_START, key, len));
    Py_ssize_t slot;
    if (t->nslots == 0 && idt_grow(t) < 0)
        return -1;
    Py_ssize_t id = idt_find(t, key, len, h, &slot);
    if (id >= 0)
        return id;
    if (2 * (t->count + 1) > t->nslots) {
        if (idt_grow(t) < 0)
            return -1;
        idt_find(t, key, len, h, &slot);
    }
    if (t->count == t->cap) {
        Py_ssize_t cap = t->cap ? 2 * t->cap : 1024;
        IdKey *keys = PyMem_Realloc(t->keys, (size_t)cap * sizeof *keys);
        if (keys == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        t->keys = keys;
        t->cap = cap;
    }
    if (t->arena_len + len > t->arena_cap) {
        Py_ssize_t cap = t->arena_cap ? t->arena_cap : 65536;
        while (cap < t->arena_len + len)
            cap *= 2;
        char *arena = PyMem_Realloc(t->arena, (size_t)cap);
        if (arena == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        t->arena = arena;
        t->arena_cap = cap;
    }
    memcpy(t->arena + t->arena_len, key, (size_t)len);
    t->keys[t->count] = (IdKey){h, t->arena_len, len};
    t->arena_len += len;
    t->slots[slot] = t->count + 1;
    return t->count++;
}

/* The id of key, or -1 when it is not in the table (adds nothing). */
static inline Py_ssize_t idt_lookup(IdTable *t, const char *key, Py_ssize_t len) {
    Py_ssize_t slot;
    return t->nslots ? idt_find(t, key, len, hash_finish(hash_more(HASH_START, key, len)), &slot) : -1;
}

/* Free the table's memory and leave it empty (IdTable's dealloc, Cache's clear). */
static void idt_reset(IdTable *t) {
    PyMem_Free(t->keys);
    PyMem_Free(t->slots);
    PyMem_Free(t->arena);
    t->keys = NULL;
    t->slots = NULL;
    t->arena = NULL;
    t->count = t->cap = t->nslots = t->arena_len = t->arena_cap = 0;
}

/* A field's bytes as a key: without its trailing NULs (numpy's bytes of an "S" field). */
static inline Py_ssize_t stripped(const char *p, Py_ssize_t n) {
    uint64_t word;
    while (n >= 8) {  /* eight zero bytes at a time (an 81-byte id is mostly padding), then byte by byte */
        memcpy(&word, p + n - 8, 8);
        if (word)
            break;
        n -= 8;
    }
    while (n > 0 && p[n - 1] == 0)
        n--;
    return n;
}

static PyObject *idt_ids(IdTable *t, PyObject *args) {
    Py_buffer view;
    Py_ssize_t itemsize, offset, size;
    if (!PyArg_ParseTuple(args, "y*nnn:ids", &view, &itemsize, &offset, &size))
        return NULL;
    PyObject *out = NULL;
    if (check_records(&view, itemsize, offset, size) < 0)
        goto done;
    Py_ssize_t count = view.len / itemsize;
    out = PyBytes_FromStringAndSize(NULL, count * (Py_ssize_t)sizeof(int64_t));
    if (out == NULL)
        goto done;
    int64_t *ids = (int64_t *)PyBytes_AS_STRING(out);
    const char *base = view.buf;
    for (Py_ssize_t r = 0; r < count; r++) {
        const char *key = base + r * itemsize + offset;
        Py_ssize_t id = idt_add(t, key, stripped(key, size));
        if (id < 0) {
            Py_CLEAR(out);
            goto done;
        }
        ids[r] = id;
    }
done:
    PyBuffer_Release(&view);
    return out;
}

static PyObject *idt_add_key(IdTable *t, PyObject *key) {
    if (!PyBytes_Check(key)) {
        PyErr_SetString(PyExc_TypeError, "a key is bytes");
        return NULL;
    }
    Py_ssize_t id = idt_add(t, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key));
    return id < 0 ? NULL : PyLong_FromSsize_t(id);
}

static PyObject *idt_get(IdTable *t, PyObject *key) {
    if (!PyBytes_Check(key)) {
        PyErr_SetString(PyExc_TypeError, "a key is bytes");
        return NULL;
    }
    Py_ssize_t id = idt_lookup(t, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key));
    if (id < 0)
        Py_RETURN_NONE;
    return PyLong_FromSsize_t(id);
}

static Py_ssize_t idt_len(IdTable *t) {
    return t->count;
}

/* tp_new of IdTable and Cache: no arguments, zeroed memory (an empty table or cache). */
static PyObject *empty_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    if (PyTuple_GET_SIZE(args) || (kwds != NULL && PyDict_GET_SIZE(kwds))) {
        PyErr_Format(PyExc_TypeError, "%s() takes no arguments", type->tp_name);
        return NULL;
    }
    return type->tp_alloc(type, 0);
}

static void idt_dealloc(IdTable *t) {
    idt_reset(t);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

static PyMethodDef idt_methods[] = {
    {"ids", (PyCFunction)idt_ids, METH_VARARGS,
     "ids(buffer, itemsize, offset, size) -> bytes: the id (int64) of the key in every record's field "
     "[offset, offset + size), its trailing NULs left out; a key not met before gets the next id"},
    {"add", (PyCFunction)idt_add_key, METH_O, "add(key: bytes) -> int: its id (the next one if it is new)"},
    {"get", (PyCFunction)idt_get, METH_O, "get(key: bytes) -> int | None: its id, or None (adds nothing)"},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods idt_as_sequence = {.sq_length = (lenfunc)idt_len};

static PyTypeObject IdTableType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "feedops.worker._jsonlines.IdTable",
    .tp_doc = "Dense ids (0, 1, 2 ... in the order met) of byte keys: the pipeline's instrument ids.",
    .tp_basicsize = sizeof(IdTable),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = empty_new,
    .tp_dealloc = (destructor)idt_dealloc,
    .tp_methods = idt_methods,
    .tp_as_sequence = &idt_as_sequence,
};

/* ------------------------------------------------------------------ Cache: the encoder's string caches */
/* The sink writer's, not the pipeline's (it sits here for the IdTable it is made of): values (the head
 * tuples, the update times' texts) by the bytes of a record's field. The IdTable gives the key its dense id,
 * the value is values[id]. A lookup that hits makes no object and runs no Python hash (a dict made a bytes
 * object per record and hashed it with siphash); a miss calls rows' build callback. */
struct Cache {
    IdTable table;      /* first: a Cache is an IdTable for idt_find and idt_add */
    PyObject **values;  /* by id, owned references; values_cap >= table.count */
    Py_ssize_t values_cap;
};

/* Forget every key; the values are released last (a value's release runs no code that could reach back
   here: they are bytes, str and tuples of them, but the order keeps the cache whole either way). */
static void cache_clear_all(Cache *c) {
    PyObject **values = c->values;
    Py_ssize_t count = c->table.count;
    idt_reset(&c->table);
    c->values = NULL;
    c->values_cap = 0;
    for (Py_ssize_t i = 0; i < count; i++)
        Py_DECREF(values[i]);
    PyMem_Free(values);
}

/* The value of key: its cached one, or on a miss build(key as bytes), stored under it (the cache emptied
   first when it holds cap keys). A borrowed reference (the cache owns it), or NULL with an exception set. */
static PyObject *cache_lookup(Cache *c, PyObject *build, const char *key, Py_ssize_t len, Py_ssize_t cap) {
    IdTable *t = &c->table;
    Py_ssize_t hit = idt_lookup(t, key, len);
    if (hit >= 0)
        return c->values[hit];
    PyObject *raw = PyBytes_FromStringAndSize(key, len);
    if (raw == NULL)
        return NULL;
    PyObject *built = PyObject_CallOneArg(build, raw);
    Py_DECREF(raw);
    if (built == NULL)
        return NULL;
    /* build may have run anything, this cache's clear() included: look again before storing */
    if (t->count >= cap)
        cache_clear_all(c);
    if (c->values_cap <= t->count) {  /* room for the next id first: every key always has its value */
        Py_ssize_t values_cap = c->values_cap ? 2 * c->values_cap : 1024;
        PyObject **values = PyMem_Realloc(c->values, (size_t)values_cap * sizeof *values);
        if (values == NULL) {
            Py_DECREF(built);
            return PyErr_NoMemory();
        }
        c->values = values;
        c->values_cap = values_cap;
    }
    Py_ssize_t before = t->count;
    Py_ssize_t id = idt_add(t, key, len);
    if (id < 0) {
        Py_DECREF(built);
        return NULL;
    }
    if (id < before)
        Py_SETREF(c->values[id], built);
    else
        c->values[id] = built;
    return built;
}

static int cache_check(PyObject *cache) {
    if (!PyObject_TypeCheck(cache, &CacheType)) {
        PyErr_Format(PyExc_TypeError, "a cache is a _jsonlines.Cache, not %s", Py_TYPE(cache)->tp_name);
        return -1;
    }
    return 0;
}

static PyObject *cache_get(Cache *c, PyObject *key) {
    if (!PyBytes_Check(key)) {
        PyErr_SetString(PyExc_TypeError, "a key is bytes");
        return NULL;
    }
    Py_ssize_t id = idt_lookup(&c->table, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key));
    if (id < 0)
        Py_RETURN_NONE;
    return Py_NewRef(c->values[id]);
}

static PyObject *cache_clear(Cache *c, PyObject *unused) {
    cache_clear_all(c);
    Py_RETURN_NONE;
}

static void cache_dealloc(Cache *c) {
    cache_clear_all(c);
    Py_TYPE(c)->tp_free((PyObject *)c);
}

static PyMethodDef cache_methods[] = {
    {"get", (PyCFunction)cache_get, METH_O, "get(key: bytes) -> the value cached under key, or None"},
    {"clear", (PyCFunction)cache_clear, METH_NOARGS, "clear(): forget every key and value"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject CacheType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "feedops.worker._jsonlines.Cache",
    .tp_doc = "The encoder's cache of values by byte key (rows' head_cache and text_cache); filled by rows.",
    .tp_basicsize = sizeof(Cache),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = empty_new,
    .tp_dealloc = (destructor)cache_dealloc,
    .tp_methods = cache_methods,
    .tp_as_sequence = &idt_as_sequence,  /* its keys */
};

/* ------------------------------------------------------------------ Ring: the callback's queue */
/* The callback's side of feedops.worker.pipeline.TickQueue: offer(struct) copies the struct's bytes, through
 * its pointer (int(struct.this)), into the next slot of a ring of structs and stamps its receive time (now()),
 * or counts a drop when the ring is full; when the pipeline said it was idle, the first offer calls wake().
 * head, tail, received, dropped and idle are read and written by TickQueue (the pipeline thread) as
 * attributes. Under the GIL: one producer, one consumer, as TickQueue's docstring says. */
typedef struct {
    PyObject_HEAD
    Py_buffer ring, recv;
    Py_ssize_t size, capacity;
    long long head, tail, received, dropped;
    int idle;
    PyObject *now, *wake;
} Ring;

static PyObject *THIS;  /* "this", interned */

/* CTP calls the SPI on threads Python never made; openctp-ctp's SWIG director takes the interpreter lock with
 * PyGILState_Ensure, which on such a thread makes a thread state (its count of Ensures: 1), and
 * PyGILState_Release deletes it again when the count falls back to zero: 6.9 us of every tick's 7.0
 * (bench/native_thread.c measures it). One PyGILState_Ensure more, never released, keeps it: the count never
 * falls back to zero, so the next calls only take and give back the lock. The count is the thread state's
 * own (CPython's PyThreadState.gilstate_counter), so no other thread, and no new thread that gets an ended
 * one's address or id, can pass for kept: inside a director call a kept state counts 2 or more. A thread
 * Python made keeps its thread state anyway; on it this adds one count, once: nothing changes. */
static inline void keep_this_thread_state(void) {
    if (PyThreadState_Get()->gilstate_counter < 2)
        PyGILState_Ensure();
}

static PyObject *keep_thread_state(PyObject *module, PyObject *unused) {
    keep_this_thread_state();
    Py_RETURN_NONE;
}

static PyObject *ring_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *names[] = {"ring", "recv", "size", "now", "wake", NULL};
    Ring *r = (Ring *)type->tp_alloc(type, 0);
    if (r == NULL)
        return NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "w*w*nOO:Ring", names, &r->ring, &r->recv, &r->size, &r->now,
                                     &r->wake)) {
        Py_DECREF(r);
        return NULL;
    }
    Py_INCREF(r->now);
    Py_INCREF(r->wake);
    if (r->size <= 0 || r->ring.len % r->size != 0 || r->recv.len != (r->ring.len / r->size) * 8) {
        PyErr_SetString(PyExc_ValueError, "the ring must hold whole structs and recv one double per struct");
        Py_DECREF(r);
        return NULL;
    }
    r->capacity = r->ring.len / r->size;
    if (r->capacity < 1) {
        PyErr_SetString(PyExc_ValueError, "the ring must hold at least one struct");
        Py_DECREF(r);
        return NULL;
    }
    return (PyObject *)r;
}

static void ring_dealloc(Ring *r) {
    if (r->ring.obj != NULL)
        PyBuffer_Release(&r->ring);
    if (r->recv.obj != NULL)
        PyBuffer_Release(&r->recv);
    Py_XDECREF(r->now);
    Py_XDECREF(r->wake);
    Py_TYPE(r)->tp_free((PyObject *)r);
}

static PyObject *ring_offer(Ring *r, PyObject *depth) {
    keep_this_thread_state();
    if (depth == Py_None)  /* (the binding passes None for a NULL pointer) */
        Py_RETURN_NONE;
    r->received++;
    if (r->head - r->tail >= r->capacity) {  /* full: counted, nothing copied; the callback never waits */
        r->dropped++;
        Py_RETURN_NONE;
    }
    PyObject *this = PyObject_GetAttr(depth, THIS);
    if (this == NULL)
        return NULL;
    PyObject *number = PyNumber_Long(this);  /* the binding's pointer object converts with int() */
    Py_DECREF(this);
    if (number == NULL)
        return NULL;
    void *address = PyLong_AsVoidPtr(number);
    Py_DECREF(number);
    if (address == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "the struct's pointer is NULL");
        return NULL;
    }
    PyObject *stamp = PyObject_CallNoArgs(r->now);
    if (stamp == NULL)
        return NULL;
    double now = PyFloat_AsDouble(stamp);
    Py_DECREF(stamp);
    if (now == -1.0 && PyErr_Occurred())
        return NULL;
    Py_ssize_t slot = (Py_ssize_t)(r->head % r->capacity);
    /* The pointer is valid only during this callback: the library reuses its buffer for the next tick.
       This memcpy is the copy; neither the struct nor the address is kept. */
    memcpy((char *)r->ring.buf + slot * r->size, address, (size_t)r->size);
    ((double *)r->recv.buf)[slot] = now;
    r->head++;
    if (r->idle) {  /* once per idle spell: the pipeline is waiting */
        r->idle = 0;
        PyObject *done = PyObject_CallNoArgs(r->wake);
        if (done == NULL)
            return NULL;
        Py_DECREF(done);
    }
    Py_RETURN_NONE;
}

static PyMethodDef ring_methods[] = {
    {"offer", (PyCFunction)ring_offer, METH_O,
     "offer(struct): copy the struct's bytes into the next slot with its receive time, or count a drop (None: "
     "nothing); the calling thread's Python thread state is kept (keep_thread_state)"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef ring_members[] = {
    {"head", T_LONGLONG, offsetof(Ring, head), 0, "structs written (the callback's)"},
    {"tail", T_LONGLONG, offsetof(Ring, tail), 0, "structs taken (the pipeline's)"},
    {"received", T_LONGLONG, offsetof(Ring, received), 0, "offers, dropped ones included"},
    {"dropped", T_LONGLONG, offsetof(Ring, dropped), 0, "offers dropped because the ring was full"},
    {"idle", T_BOOL, offsetof(Ring, idle), 0, "the pipeline waits: the next offer calls wake()"},
    {"capacity", T_PYSSIZET, offsetof(Ring, capacity), READONLY, "structs the ring holds"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject RingType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "feedops.worker._jsonlines.Ring",
    .tp_doc = "Ring(ring, recv, size, now, wake): the callback's side of the tick queue (TickQueue).",
    .tp_basicsize = sizeof(Ring),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = ring_new,
    .tp_dealloc = (destructor)ring_dealloc,
    .tp_methods = ring_methods,
    .tp_members = ring_members,
};

/* ------------------------------------------------------------------ group, copy_fields */
#define MAX_FIELDS 64

/* fields: a tuple of (offset, size) pairs, each inside a record of itemsize bytes */
static int parse_ranges(PyObject *fields, Py_ssize_t itemsize, Py_ssize_t (*ranges)[3], Py_ssize_t per_item,
                        Py_ssize_t *count_out, Py_ssize_t other_itemsize) {
    if (!PyTuple_Check(fields) || PyTuple_GET_SIZE(fields) > MAX_FIELDS) {
        PyErr_Format(PyExc_ValueError, "the fields are a tuple of at most %d entries", MAX_FIELDS);
        return -1;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(fields);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *t = PyTuple_GET_ITEM(fields, i);
        Py_ssize_t *r = ranges[i];
        int ok = per_item == 2 ? PyArg_ParseTuple(t, "nn", &r[0], &r[1])
                               : PyArg_ParseTuple(t, "nnn", &r[0], &r[1], &r[2]);
        if (!ok)
            return -1;
        Py_ssize_t size = per_item == 2 ? r[1] : r[2];
        if (r[0] < 0 || size < 0 || r[0] + size > itemsize ||
            (per_item == 3 && (r[1] < 0 || r[1] + size > other_itemsize))) {
            PyErr_Format(PyExc_ValueError, "field %zd lies outside the record", i);
            return -1;
        }
    }
    *count_out = count;
    return 0;
}

static PyObject *group(PyObject *module, PyObject *args) {
    Py_buffer view;
    Py_ssize_t itemsize;
    PyObject *fields;
    if (!PyArg_ParseTuple(args, "y*nO:group", &view, &itemsize, &fields))
        return NULL;
    Py_ssize_t ranges[MAX_FIELDS][3], nfields;
    PyObject *firsts = NULL, *inverse = NULL, *out = NULL;
    Py_ssize_t *slots = NULL;
    if (check_records(&view, itemsize, 0, 0) < 0 || parse_ranges(fields, itemsize, ranges, 2, &nfields, 0) < 0)
        goto done;
    Py_ssize_t count = view.len / itemsize, nslots = 16;
    while (nslots < 2 * count)
        nslots *= 2;
    slots = PyMem_Calloc((size_t)nslots, sizeof *slots);  /* group + 1, 0 for an empty slot */
    inverse = PyBytes_FromStringAndSize(NULL, count * (Py_ssize_t)sizeof(int64_t));
    firsts = PyBytes_FromStringAndSize(NULL, count * (Py_ssize_t)sizeof(int64_t));  /* cut to size below */
    if (slots == NULL || inverse == NULL || firsts == NULL) {
        if (slots == NULL)
            PyErr_NoMemory();
        goto done;
    }
    int64_t *which = (int64_t *)PyBytes_AS_STRING(inverse), *first = (int64_t *)PyBytes_AS_STRING(firsts);
    const char *base = view.buf;
    Py_ssize_t groups = 0;
    size_t mask = (size_t)nslots - 1;
    for (Py_ssize_t r = 0; r < count; r++) {
        const char *rec = base + r * itemsize;
        uint64_t h = HASH_START;
        for (Py_ssize_t f = 0; f < nfields; f++)
            h = hash_more(h, rec + ranges[f][0], ranges[f][1]);
        size_t i = (size_t)hash_finish(h) & mask;
        for (;; i = (i + 1) & mask) {
            Py_ssize_t s = slots[i];
            if (s == 0) {
                slots[i] = groups + 1;
                first[groups] = r;
                which[r] = groups++;
                break;
            }
            const char *other = base + first[s - 1] * itemsize;
            Py_ssize_t f = 0;
            while (f < nfields && memcmp(rec + ranges[f][0], other + ranges[f][0], (size_t)ranges[f][1]) == 0)
                f++;
            if (f == nfields) {
                which[r] = s - 1;
                break;
            }
        }
    }
    if (_PyBytes_Resize(&firsts, groups * (Py_ssize_t)sizeof(int64_t)) < 0)
        goto done;
    out = PyTuple_Pack(2, firsts, inverse);
done:
    Py_XDECREF(firsts);
    Py_XDECREF(inverse);
    PyMem_Free(slots);
    PyBuffer_Release(&view);
    return out;
}

static PyObject *copy_fields(PyObject *module, PyObject *args) {
    Py_buffer src, dst;
    Py_ssize_t src_itemsize, dst_itemsize;
    PyObject *plan;
    if (!PyArg_ParseTuple(args, "y*nw*nO:copy_fields", &src, &src_itemsize, &dst, &dst_itemsize, &plan))
        return NULL;
    PyObject *out = NULL;
    Py_ssize_t ranges[MAX_FIELDS][3], nfields;
    if (check_records(&src, src_itemsize, 0, 0) < 0 || check_records(&dst, dst_itemsize, 0, 0) < 0 ||
        parse_ranges(plan, src_itemsize, ranges, 3, &nfields, dst_itemsize) < 0)
        goto done;
    Py_ssize_t count = src.len / src_itemsize;
    if (dst.len / dst_itemsize != count) {
        PyErr_SetString(PyExc_ValueError, "the two buffers hold different numbers of records");
        goto done;
    }
    const char *from = src.buf;
    char *to = dst.buf;
    for (Py_ssize_t r = 0; r < count; r++) {
        const char *a = from + r * src_itemsize;
        char *b = to + r * dst_itemsize;
        for (Py_ssize_t f = 0; f < nfields; f++) {
            const char *from_field = a + ranges[f][0];
            char *to_field = b + ranges[f][1];
            switch (ranges[f][2]) {  /* a double or an int: one move, not a call */
            case 8:
                memcpy(to_field, from_field, 8);
                break;
            case 4:
                memcpy(to_field, from_field, 4);
                break;
            default:
                memcpy(to_field, from_field, (size_t)ranges[f][2]);
            }
        }
    }
    out = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    return out;
}

/* dedupe(ids, days, volumes, ts, stale_below, has, day, volume, ts_state, seeded, codes) -> reasons
 *
 * The deduper's rules (feedops/worker/dedupe.py, which holds the reason names and passes their codes:
 * (stale, backwards_day, replay, duplicate, backwards_volume)) over a batch, tick after tick: each tick
 * against the state its instrument's earlier ticks left. ids (int64), days (int64), volumes and ts
 * (float64) per tick; the state per instrument id, written in place for every tick kept: has and seeded
 * (one byte each), day (int64), volume and ts_state (float64). Returns the reason code of every tick
 * (int64 bytes, 0: kept). */
static PyObject *dedupe(PyObject *module, PyObject *args) {
    Py_buffer b[10];
    long long stale_below;
    int stale, backwards_day, replay, duplicate, backwards_volume;
    memset(b, 0, sizeof b);
    if (!PyArg_ParseTuple(args, "y*y*y*y*Lw*w*w*w*w*(iiiii):dedupe", &b[0], &b[1], &b[2], &b[3], &stale_below,
                          &b[4], &b[5], &b[6], &b[7], &b[8], &stale, &backwards_day, &replay, &duplicate,
                          &backwards_volume)) {
        for (int i = 0; i < 10; i++)
            if (b[i].obj != NULL)
                PyBuffer_Release(&b[i]);
        return NULL;
    }
    PyObject *out = NULL;
    Py_ssize_t n = b[0].len / 8, m = b[4].len;
    if (b[0].len % 8 || b[1].len != n * 8 || b[2].len != n * 8 || b[3].len != n * 8) {
        PyErr_SetString(PyExc_ValueError, "ids, days, volumes and ts must be as many int64 and float64 values");
        goto done;
    }
    if (b[5].len != m * 8 || b[6].len != m * 8 || b[7].len != m * 8 || b[8].len != m) {
        PyErr_SetString(PyExc_ValueError, "the state arrays must be as long as each other");
        goto done;
    }
    const int64_t *ids = b[0].buf, *days = b[1].buf;
    const double *volumes = b[2].buf, *ts = b[3].buf;
    char *has = b[4].buf, *seeded = b[8].buf;
    int64_t *last_day = b[5].buf;
    double *last_volume = b[6].buf, *last_ts = b[7].buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= m) {
            PyErr_Format(PyExc_ValueError, "instrument id %lld has no state (%zd held)", (long long)ids[i], m);
            goto done;
        }
    }
    out = PyBytes_FromStringAndSize(NULL, n * 8);
    if (out == NULL)
        goto done;
    int64_t *reasons = (int64_t *)PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t id = ids[i], day = days[i];
        double volume = volumes[i], t = ts[i];
        int code = 0;
        if (day < stale_below) {
            code = stale;
        } else if (has[id]) {
            if (day < last_day[id]) {
                code = backwards_day;
            } else if (day == last_day[id]) {
                if (seeded[id]) {  /* a watermark of exchange time only, until a tick passes */
                    if (t < last_ts[id])
                        code = replay;
                    else if (t == last_ts[id] && volume <= last_volume[id])
                        code = duplicate;
                } else if (volume < last_volume[id]) {
                    code = backwards_volume;
                } else if (t == last_ts[id] && volume == last_volume[id]) {
                    code = duplicate;
                } else if (t < last_ts[id]) {
                    code = replay;
                }
            }
        }
        if (code == 0) {
            has[id] = 1;
            seeded[id] = 0;
            last_day[id] = day;
            last_volume[id] = volume;
            last_ts[id] = t;
        }
        reasons[i] = code;
    }
done:
    for (int i = 0; i < 10; i++)
        if (b[i].obj != NULL)
            PyBuffer_Release(&b[i]);
    return out;
}

static PyObject *double_text(PyObject *module, PyObject *arg) {
    double v = PyFloat_AsDouble(arg);
    if (v == -1.0 && PyErr_Occurred())
        return NULL;
    char tmp[40 + SHORT], *start;
    Py_ssize_t n = fast_double(v, tmp, &start);
    if (!n)
        Py_RETURN_NONE;
    return PyBytes_FromStringAndSize(start, n);
}

static PyMethodDef methods[] = {
    {"rows", rows, METH_VARARGS,
     "rows(buffer, itemsize, plan, head_offset, head_size, head_cache, build_head, text_cache, build_text, "
     "float_text, exchange_ts_offset, recv_ts_offset, cache_max[, text_mode]) -> [(line, instrument, exchange, "
     "day, exchange_ts, recv_ts)] or, in text mode, (text, ends, instruments, exchanges, days); the caches are "
     "Cache objects"},
    {"double_text", double_text, METH_O,
     "The text this module writes for a double itself, or None where it hands the double to float_text."},
    {"keep_thread_state", keep_thread_state, METH_NOARGS,
     "Keep the calling thread's Python thread state for the life of the process (see the C source)"},
    {"group", group, METH_VARARGS,
     "group(buffer, itemsize, fields) -> (firsts, inverse): the distinct values of the byte ranges fields "
     "((offset, size), ...) of the records, in the order first met: the index of each one's first record, and "
     "each record's group (int64 bytes)"},
    {"dedupe", dedupe, METH_VARARGS,
     "dedupe(ids, days, volumes, ts, stale_below, has, day, volume, ts_state, seeded, codes) -> reasons: "
     "the deduper's rules over a batch, tick after tick (feedops.worker.dedupe)"},
    {"copy_fields", copy_fields, METH_VARARGS,
     "copy_fields(src, src_itemsize, dst, dst_itemsize, plan): copy the byte ranges of plan "
     "((src_offset, dst_offset, size), ...) of every record of src into the record of dst at the same index"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "feedops.worker._jsonlines",
    "The sink writer's line encoder (see feedops.worker.encode).", -1, methods,
};

PyMODINIT_FUNC PyInit__jsonlines(void) {
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL)
        return NULL;
    THIS = PyUnicode_InternFromString("this");
    if (THIS == NULL || PyType_Ready(&RingType) < 0 || PyModule_AddObjectRef(m, "Ring", (PyObject *)&RingType) < 0 ||
        PyType_Ready(&IdTableType) < 0 || PyModule_AddObjectRef(m, "IdTable", (PyObject *)&IdTableType) < 0 ||
        PyType_Ready(&CacheType) < 0 || PyModule_AddObjectRef(m, "Cache", (PyObject *)&CacheType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "LIT", OP_LIT) < 0 || PyModule_AddIntConstant(m, "FLOAT", OP_FLOAT) < 0 ||
        PyModule_AddIntConstant(m, "INT", OP_INT) < 0 || PyModule_AddIntConstant(m, "VOLUME", OP_VOLUME) < 0 ||
        PyModule_AddIntConstant(m, "HEAD", OP_HEAD) < 0 || PyModule_AddIntConstant(m, "TEXT", OP_TEXT) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
