#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json_file.h"

typedef struct {
    char *path;
    void *map;
    size_t size;
} mapped_file;

struct srp_ckpt {
    mapped_file *files;
    int n_files;
    srp_tensor_info *tensors; /* sorted by name */
    int n_tensors, cap_tensors;
};

static int map_file(const char *path, mapped_file *mf, srp_err *e) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return srp_err_set(e, SRP_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return srp_err_set(e, SRP_EIO, "%s: cannot stat: %s", path, strerror(errno));
    }
    if (st.st_size < 8) {
        close(fd);
        return srp_err_set(e, SRP_EFORMAT, "%s: truncated (%lld bytes, no header)", path,
                           (long long)st.st_size);
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return srp_err_set(e, SRP_EIO, "%s: cannot map: %s", path, strerror(errno));
    mf->path = strdup(path);
    mf->map = m;
    mf->size = (size_t)st.st_size;
    if (!mf->path) {
        munmap(m, mf->size);
        return srp_err_set(e, SRP_ENOMEM, "out of memory");
    }
    return 0;
}

static srp_dtype parse_dtype(const char *s) {
    if (!strcmp(s, "F32")) return SRP_F32;
    if (!strcmp(s, "F16")) return SRP_F16;
    if (!strcmp(s, "BF16")) return SRP_BF16;
    if (!strcmp(s, "I32")) return SRP_I32;
    return SRP_DTYPE_OTHER;
}

static size_t other_dtype_size(const char *s) {
    static const struct {
        const char *n;
        size_t size;
    } t[] = { { "F64", 8 },     { "I64", 8 },     { "U64", 8 }, { "I16", 2 },
              { "U16", 2 },     { "I8", 1 },      { "U8", 1 },  { "BOOL", 1 },
              { "F8_E4M3", 1 }, { "F8_E5M2", 1 }, { "U32", 4 } };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (!strcmp(s, t[i].n)) return t[i].size;
    return 0;
}

static int add_tensor(srp_ckpt *ck, srp_tensor_info *ti, srp_err *e) {
    if (ck->n_tensors == ck->cap_tensors) {
        int cap = ck->cap_tensors ? ck->cap_tensors * 2 : 256;
        srp_tensor_info *nt = realloc(ck->tensors, (size_t)cap * sizeof *nt);
        if (!nt) return srp_err_set(e, SRP_ENOMEM, "out of memory");
        ck->tensors = nt;
        ck->cap_tensors = cap;
    }
    ck->tensors[ck->n_tensors++] = *ti;
    return 0;
}

/* Parses and validates the header of one mapped file; adds its tensors to ck. */
static int read_header(srp_ckpt *ck, const mapped_file *mf, srp_err *e) {
    const unsigned char *p = mf->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | p[i];
    if (hlen > mf->size - 8)
        return srp_err_set(e, SRP_EFORMAT,
                           "%s: truncated or not a safetensors file (header of %llu bytes, file of "
                           "%zu)",
                           mf->path, (unsigned long long)hlen, mf->size);
    cJSON *root = srp_json_parse((const char *)p + 8, (size_t)hlen, mf->path, e);
    if (!root) return e ? e->code : SRP_EFORMAT;
    const unsigned char *data = p + 8 + hlen;
    uint64_t data_size = mf->size - 8 - hlen;
    int rc = 0;
    if (!cJSON_IsObject(root)) {
        rc = srp_err_set(e, SRP_EFORMAT, "%s: header is not a JSON object", mf->path);
        goto out;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, root) {
        if (!strcmp(it->string, "__metadata__")) continue;
        srp_tensor_info ti;
        memset(&ti, 0, sizeof ti);
        const char *name = it->string;
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype");
        const cJSON *shape = cJSON_GetObjectItemCaseSensitive(it, "shape");
        const cJSON *offs = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
        if (!cJSON_IsString(dt) || !cJSON_IsArray(shape) || !cJSON_IsArray(offs) ||
            cJSON_GetArraySize(offs) != 2) {
            rc = srp_err_set(e, SRP_EFORMAT,
                             "%s: tensor %s: header entry needs dtype, shape and data_offsets",
                             mf->path, name);
            goto out;
        }
        snprintf(ti.dtype_name, sizeof ti.dtype_name, "%s", dt->valuestring);
        ti.dtype = parse_dtype(dt->valuestring);
        size_t esize = ti.dtype != SRP_DTYPE_OTHER ? srp_dtype_size(ti.dtype)
                                                   : other_dtype_size(dt->valuestring);
        if (!esize) {
            rc = srp_err_set(e, SRP_EFORMAT, "%s: tensor %s: unknown dtype \"%s\"", mf->path, name,
                             dt->valuestring);
            goto out;
        }
        ti.ndim = cJSON_GetArraySize(shape);
        if (ti.ndim > SRP_MAX_DIMS) {
            rc = srp_err_set(e, SRP_EFORMAT, "%s: tensor %s: %d dimensions", mf->path, name,
                             ti.ndim);
            goto out;
        }
        ti.numel = 1;
        for (int d = 0; d < ti.ndim; d++) {
            const cJSON *s = cJSON_GetArrayItem(shape, d);
            if (!cJSON_IsNumber(s) || s->valuedouble < 0 || s->valuedouble > 1e15) {
                rc = srp_err_set(e, SRP_EFORMAT, "%s: tensor %s: bad shape", mf->path, name);
                goto out;
            }
            ti.shape[d] = (int64_t)s->valuedouble;
            if (ti.shape[d] && ti.numel > INT64_MAX / 16 / ti.shape[d]) {
                rc = srp_err_set(e, SRP_EFORMAT, "%s: tensor %s: shape too large", mf->path, name);
                goto out;
            }
            ti.numel *= ti.shape[d];
        }
        double b = cJSON_GetArrayItem(offs, 0)->valuedouble;
        double en = cJSON_GetArrayItem(offs, 1)->valuedouble;
        if (!cJSON_IsNumber(cJSON_GetArrayItem(offs, 0)) ||
            !cJSON_IsNumber(cJSON_GetArrayItem(offs, 1)) || b < 0 || en < b) {
            rc = srp_err_set(e, SRP_EFORMAT, "%s: tensor %s: bad data_offsets", mf->path, name);
            goto out;
        }
        uint64_t begin = (uint64_t)b, end = (uint64_t)en;
        if (end > data_size) {
            rc =
                srp_err_set(e, SRP_EFORMAT,
                            "%s: tensor %s: data ends at byte %llu but the file holds %llu bytes "
                            "of data (truncated file?)",
                            mf->path, name, (unsigned long long)end, (unsigned long long)data_size);
            goto out;
        }
        if (end - begin != (uint64_t)ti.numel * esize) {
            rc = srp_err_set(e, SRP_EFORMAT,
                             "%s: tensor %s: %llu bytes of data for %lld elements of %s", mf->path,
                             name, (unsigned long long)(end - begin), (long long)ti.numel,
                             dt->valuestring);
            goto out;
        }
        ti.data = data + begin;
        ti.file = mf->path;
        ti.name = strdup(name);
        if (!ti.name) {
            rc = srp_err_set(e, SRP_ENOMEM, "out of memory");
            goto out;
        }
        rc = add_tensor(ck, &ti, e);
        if (rc) {
            free(ti.name);
            goto out;
        }
    }
out:
    cJSON_Delete(root);
    return rc;
}

static int cmp_tensor(const void *a, const void *b) {
    return strcmp(((const srp_tensor_info *)a)->name, ((const srp_tensor_info *)b)->name);
}

static int add_file(srp_ckpt *ck, const char *path, srp_err *e) {
    mapped_file *nf = realloc(ck->files, (size_t)(ck->n_files + 1) * sizeof *nf);
    if (!nf) return srp_err_set(e, SRP_ENOMEM, "out of memory");
    ck->files = nf;
    int rc = map_file(path, &ck->files[ck->n_files], e);
    if (rc) return rc;
    ck->n_files++;
    return read_header(ck, &ck->files[ck->n_files - 1], e);
}

static int finish(srp_ckpt *ck, srp_err *e) {
    qsort(ck->tensors, (size_t)ck->n_tensors, sizeof *ck->tensors, cmp_tensor);
    for (int i = 1; i < ck->n_tensors; i++)
        if (!strcmp(ck->tensors[i].name, ck->tensors[i - 1].name))
            return srp_err_set(e, SRP_EFORMAT, "%s: tensor %s appears twice (also in %s)",
                               ck->tensors[i].file, ck->tensors[i].name, ck->tensors[i - 1].file);
    return 0;
}

int srp_ckpt_open_file(const char *path, srp_ckpt **out, srp_err *e) {
    srp_ckpt *ck = calloc(1, sizeof *ck);
    if (!ck) return srp_err_set(e, SRP_ENOMEM, "out of memory");
    int rc = add_file(ck, path, e);
    if (!rc) rc = finish(ck, e);
    if (rc) {
        srp_ckpt_close(ck);
        return rc;
    }
    *out = ck;
    return 0;
}

static int open_sharded(srp_ckpt *ck, const char *dir, const char *index_path, srp_err *e) {
    cJSON *root = srp_json_load_file(index_path, e);
    if (!root) return e ? e->code : SRP_EFORMAT;
    int rc = 0;
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm)) {
        rc = srp_err_set(e, SRP_EFORMAT, "%s: missing field \"weight_map\"", index_path);
        goto out;
    }
    /* Open each distinct shard once, in order of first mention. */
    const cJSON *it;
    cJSON_ArrayForEach(it, wm) {
        if (!cJSON_IsString(it)) {
            rc = srp_err_set(e, SRP_EFORMAT, "%s: weight_map entry %s is not a file name",
                             index_path, it->string);
            goto out;
        }
        const char *f = it->valuestring;
        if (!*f || strchr(f, '/') || !strcmp(f, "..")) {
            rc = srp_err_set(e, SRP_EFORMAT, "%s: weight_map entry %s: bad shard name \"%s\"",
                             index_path, it->string, f);
            goto out;
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, f);
        int seen = 0;
        for (int i = 0; i < ck->n_files && !seen; i++) seen = !strcmp(ck->files[i].path, path);
        if (!seen && (rc = add_file(ck, path, e))) goto out;
    }
    rc = finish(ck, e);
    if (rc) goto out;
    /* Every tensor the index names must be in the shard it names. */
    cJSON_ArrayForEach(it, wm) {
        const srp_tensor_info *ti = srp_ckpt_find(ck, it->string);
        const char *slash = ti ? strrchr(ti->file, '/') : NULL;
        if (!ti || strcmp(slash ? slash + 1 : ti->file, it->valuestring)) {
            rc = srp_err_set(e, SRP_EFORMAT, "%s: tensor %s is listed in %s but not found there",
                             index_path, it->string, it->valuestring);
            goto out;
        }
    }
out:
    cJSON_Delete(root);
    return rc;
}

int srp_ckpt_open(const char *dir, srp_ckpt **out, srp_err *e) {
    char index_path[4096], single[4096];
    snprintf(index_path, sizeof index_path, "%s/model.safetensors.index.json", dir);
    snprintf(single, sizeof single, "%s/model.safetensors", dir);
    if (access(index_path, F_OK) != 0) {
        if (access(single, F_OK) != 0)
            return srp_err_set(e, SRP_EIO,
                               "%s: no model.safetensors or model.safetensors.index.json", dir);
        return srp_ckpt_open_file(single, out, e);
    }
    srp_ckpt *ck = calloc(1, sizeof *ck);
    if (!ck) return srp_err_set(e, SRP_ENOMEM, "out of memory");
    int rc = open_sharded(ck, dir, index_path, e);
    if (rc) {
        srp_ckpt_close(ck);
        return rc;
    }
    *out = ck;
    return 0;
}

void srp_ckpt_close(srp_ckpt *ck) {
    if (!ck) return;
    for (int i = 0; i < ck->n_files; i++) {
        munmap(ck->files[i].map, ck->files[i].size);
        free(ck->files[i].path);
    }
    for (int i = 0; i < ck->n_tensors; i++) free(ck->tensors[i].name);
    free(ck->files);
    free(ck->tensors);
    free(ck);
}

const srp_tensor_info *srp_ckpt_find(const srp_ckpt *ck, const char *name) {
    srp_tensor_info key;
    key.name = (char *)name;
    return bsearch(&key, ck->tensors, (size_t)ck->n_tensors, sizeof key, cmp_tensor);
}

int srp_ckpt_count(const srp_ckpt *ck) {
    return ck->n_tensors;
}

const srp_tensor_info *srp_ckpt_tensor(const srp_ckpt *ck, int i) {
    return &ck->tensors[i];
}

uint64_t srp_ckpt_bytes(const srp_ckpt *ck) {
    uint64_t n = 0;
    for (int i = 0; i < ck->n_tensors; i++) {
        const srp_tensor_info *t = &ck->tensors[i];
        size_t es = t->dtype != SRP_DTYPE_OTHER ? srp_dtype_size(t->dtype)
                                                : other_dtype_size(t->dtype_name);
        n += (uint64_t)t->numel * es;
    }
    return n;
}
