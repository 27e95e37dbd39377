/* Memory-mapped safetensors checkpoints: one model.safetensors, or the shards listed by
 * model.safetensors.index.json. Tensor data is never copied here; it points into the maps, which
 * live until srp_ckpt_close. */
#ifndef SRP_SAFETENSORS_H
#define SRP_SAFETENSORS_H

#include <stdint.h>

#include "dtype.h"
#include "status.h"

#define SRP_MAX_DIMS 8

typedef struct srp_tensor_info {
    char *name;
    srp_dtype dtype;
    char dtype_name[16]; /* as written in the header, for messages */
    int ndim;
    int64_t shape[SRP_MAX_DIMS];
    int64_t numel;
    const void *data;
    const char *file; /* path of the shard holding it */
} srp_tensor_info;

typedef struct srp_ckpt srp_ckpt;

/* Opens DIR/model.safetensors.index.json if present, else DIR/model.safetensors. Every header
 * is validated (offsets inside the file, sizes matching shapes) so later reads cannot fault. */
int srp_ckpt_open(const char *dir, srp_ckpt **out, srp_err *e);

/* Opens one .safetensors file (used by tests and converters). */
int srp_ckpt_open_file(const char *path, srp_ckpt **out, srp_err *e);

void srp_ckpt_close(srp_ckpt *ck);

/* Returns the tensor called name, or NULL. */
const srp_tensor_info *srp_ckpt_find(const srp_ckpt *ck, const char *name);

int srp_ckpt_count(const srp_ckpt *ck);
const srp_tensor_info *srp_ckpt_tensor(const srp_ckpt *ck, int i);

/* Total bytes of tensor data in the checkpoint. */
uint64_t srp_ckpt_bytes(const srp_ckpt *ck);

#endif
