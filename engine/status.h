/* Error values shared by every serpent module.
 *
 * Public functions return 0 (SRP_OK) or a negative SRP_E* code and, when given an srp_err,
 * write into it a message that names what failed (file, tensor, field, parameter). Only main()
 * decides to exit. */
#ifndef SRP_STATUS_H
#define SRP_STATUS_H

enum {
    SRP_OK = 0,
    SRP_EIO = -1,          /* a file could not be opened, read or mapped */
    SRP_EFORMAT = -2,      /* a file's content is malformed or inconsistent */
    SRP_EUNSUPPORTED = -3, /* valid input that serpent does not implement */
    SRP_ENOMEM = -4,       /* host or device allocation failed */
    SRP_EINVAL = -5,       /* a caller passed a bad argument */
    SRP_EBACKEND = -6,     /* the compute backend failed */
    SRP_EFULL = -7,        /* no free slot, KV block or queue place */
};

typedef struct srp_err {
    int code;
    char msg[1024];
} srp_err;

/* Formats a message into e (which may be NULL) and returns code, so callers can write
 * `return srp_err_set(e, SRP_EFORMAT, "%s: ...", path);`. */
int srp_err_set(srp_err *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Prepends "prefix: " to the message already in e (for adding context on the way up). */
int srp_err_prefix(srp_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

const char *srp_strerror(int code);

#endif
