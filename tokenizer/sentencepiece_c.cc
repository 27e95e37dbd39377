#include "sentencepiece_c.h"

#include <sentencepiece_processor.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

struct srp_spm {
    sentencepiece::SentencePieceProcessor sp;
};

extern "C" srp_spm *srp_spm_load(const char *path, char *err, size_t errlen) {
    srp_spm *s = new (std::nothrow) srp_spm;
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return nullptr;
    }
    auto st = s->sp.Load(path);
    if (!st.ok()) {
        snprintf(err, errlen, "%s: not a SentencePiece model: %s", path, st.ToString().c_str());
        delete s;
        return nullptr;
    }
    return s;
}

extern "C" void srp_spm_free(srp_spm *s) {
    delete s;
}

extern "C" int srp_spm_encode(const srp_spm *s, const char *text, size_t len, int32_t **ids,
                              int *n) {
    std::vector<int> v;
    try {
        if (!s->sp.Encode(std::string(text, len), &v).ok()) return -1;
    } catch (...) {
        return -1;
    }
    *ids = static_cast<int32_t *>(malloc((v.size() ? v.size() : 1) * sizeof(int32_t)));
    if (!*ids) return -1;
    for (size_t i = 0; i < v.size(); i++) (*ids)[i] = v[i];
    *n = static_cast<int>(v.size());
    return 0;
}

extern "C" int srp_spm_encode_spans(const srp_spm *s, const char *text, size_t len, int32_t **ids,
                                    size_t (**spans)[2], int *n) {
    try {
        auto spt = s->sp.EncodeAsImmutableProto(std::string(text, len));
        size_t m = spt.pieces_size();
        *ids = static_cast<int32_t *>(malloc((m ? m : 1) * sizeof(int32_t)));
        *spans = static_cast<size_t(*)[2]>(malloc((m ? m : 1) * sizeof(size_t[2])));
        if (!*ids || !*spans) {
            free(*ids);
            free(*spans);
            return -1;
        }
        for (size_t i = 0; i < m; i++) {
            auto p = spt.pieces(static_cast<int>(i));
            (*ids)[i] = static_cast<int32_t>(p.id());
            (*spans)[i][0] = p.begin();
            (*spans)[i][1] = p.end();
        }
        *n = static_cast<int>(m);
    } catch (...) {
        return -1;
    }
    return 0;
}

extern "C" int srp_spm_decode(const srp_spm *s, const int32_t *ids, int n, char **text,
                              size_t *len) {
    std::vector<int> v(ids, ids + n);
    std::string out;
    try {
        if (!s->sp.Decode(v, &out).ok()) return -1;
    } catch (...) {
        return -1;
    }
    *text = static_cast<char *>(malloc(out.size() + 1));
    if (!*text) return -1;
    memcpy(*text, out.data(), out.size());
    (*text)[out.size()] = 0;
    *len = out.size();
    return 0;
}

extern "C" int srp_spm_size(const srp_spm *s) {
    return s->sp.GetPieceSize();
}
extern "C" int srp_spm_bos(const srp_spm *s) {
    return s->sp.bos_id();
}
extern "C" int srp_spm_eos(const srp_spm *s) {
    return s->sp.eos_id();
}

extern "C" int srp_spm_is_control(const srp_spm *s, int id) {
    if (id < 0 || id >= s->sp.GetPieceSize()) return 0;
    return s->sp.IsControl(id) || s->sp.IsUnknown(id);
}

extern "C" int srp_spm_is_unknown(const srp_spm *s, int id) {
    return id >= 0 && id < s->sp.GetPieceSize() && s->sp.IsUnknown(id);
}

extern "C" char *srp_spm_id_to_piece(const srp_spm *s, int id) {
    if (id < 0 || id >= s->sp.GetPieceSize()) return nullptr;
    const std::string &p = s->sp.IdToPiece(id);
    char *out = static_cast<char *>(malloc(p.size() + 1));
    if (!out) return nullptr;
    memcpy(out, p.data(), p.size());
    out[p.size()] = 0;
    return out;
}

extern "C" int srp_spm_piece_id(const srp_spm *s, const char *piece) {
    int id = s->sp.PieceToId(piece);
    if (id == s->sp.unk_id() && s->sp.IdToPiece(id) != piece) return -1;
    return id;
}
