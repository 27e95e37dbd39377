/* Random weights (the benchmarks' mode, engine_opts.random_weights) for the shapes of the Bamba,
 * Falcon-H1, Zamba2 and Llama fixtures: every tensor the architecture's loader asks for is drawn
 * (Zamba2's shared blocks once, its adapters per use), and a prefill plus a decode step give
 * finite logits. */
#include "engine.h"
#include "test.h"

TEST(engine_random_weights_of_the_families) {
    static const char *const names[] = { "bamba",      "falcon_h1_bpe", "falcon_h1_no_mixer_norm",
                                         "zamba2_bpe", "zamba2_plain",  "llama_dynamic" };
    for (size_t f = 0; f < sizeof names / sizeof names[0]; f++) {
        srp_engine_opts o;
        srp_engine_opts_default(&o);
        o.backend = "cpu";
        o.n_threads = 1;
        o.max_seqs = 2;
        o.max_seq_len = 128;
        o.random_weights = 1;
        o.seed = 7;
        char dir[600];
        snprintf(dir, sizeof dir, "%s/%s", srp_test_path("fixtures"), names[f]);
        srp_engine *eng = NULL;
        srp_err e = { 0 };
        CHECKF(srp_engine_open(dir, &o, &eng, &e) == 0, "%s: %s", names[f], e.msg);
        if (!eng) continue;
        srp_seq s;
        REQUIRE(srp_seq_open(eng, &s, &e) == 0);
        int32_t ids[40];
        for (int i = 0; i < 40; i++) ids[i] = (i * 7 + 3) % 200;
        srp_mat lg;
        srp_step_item it = { &s, ids, 40, SRP_LOGITS_LAST, 0 };
        REQUIRE(srp_engine_step(eng, &it, 1, &lg, &e) == 0);
        srp_step_item next = { &s, ids, 1, SRP_LOGITS_LAST, 0 };
        REQUIRE(srp_engine_step(eng, &next, 1, &lg, &e) == 0);
        const int V = srp_engine_config(eng)->vocab_size;
        float *row = malloc(sizeof(float) * V);
        REQUIRE(srp_engine_logits_to_host(eng, lg, 0, 1, row, &e) == 0);
        int finite = 1;
        double ss = 0;
        for (int i = 0; i < V; i++) {
            finite &= isfinite(row[i]);
            ss += (double)row[i] * row[i];
        }
        CHECKF(finite && ss > 0, "%s: random-weight logits not finite or all zero", names[f]);
        free(row);
        srp_seq_close(eng, &s);
        srp_engine_close(eng);
    }
}
