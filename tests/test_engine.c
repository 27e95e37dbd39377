/* The engine's bookkeeping: slots and KV blocks are handed out and returned exactly, and bad
 * steps are refused before they touch any state. */
#include "engine.h"
#include "test.h"

static srp_engine *open_fixture(const char *name, int seqs, int seq_len, int blocks) {
    srp_engine_opts o;
    srp_engine_opts_default(&o);
    o.backend = "cpu";
    o.n_threads = 1;
    o.max_seqs = seqs;
    o.max_seq_len = seq_len;
    o.max_batch_tokens = 64;
    o.kv_block_size = 4;
    o.kv_blocks = blocks;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/%s", srp_test_path("fixtures"), name);
    srp_engine *eng = NULL;
    srp_err e = { 0 };
    if (srp_engine_open(dir, &o, &eng, &e)) fprintf(stderr, "%s\n", e.msg);
    return eng;
}

TEST(engine_slots_and_blocks_are_returned) {
    srp_engine *eng = open_fixture("nemotron_h_pattern", 3, 32, 10);
    REQUIRE(eng);
    srp_err e = { 0 };
    srp_seq a, b, c, d;
    CHECK(srp_engine_total_blocks(eng) == 10 && srp_engine_free_slots(eng) == 3);
    REQUIRE(srp_seq_open(eng, &a, &e) == 0);
    REQUIRE(srp_seq_open(eng, &b, &e) == 0);
    REQUIRE(srp_seq_open(eng, &c, &e) == 0);
    CHECK(srp_seq_open(eng, &d, &e) == SRP_EFULL);
    CHECK(a.slot != b.slot && b.slot != c.slot && a.slot != c.slot);
    REQUIRE(srp_seq_reserve(eng, &a, 17, &e) == 0); /* 5 blocks of 4 */
    CHECK(srp_engine_free_blocks(eng) == 5 && a.n_blocks == 5);
    CHECK(srp_seq_reserve(eng, &b, 24, &e) == SRP_EFULL); /* needs 6 */
    CHECK(b.n_blocks == 0 && srp_engine_free_blocks(eng) == 5);
    CHECK(srp_seq_reserve(eng, &b, 33, &e) == SRP_EINVAL); /* beyond max_seq_len */
    srp_seq_close(eng, &a);
    srp_seq_close(eng, &a); /* closing twice is harmless */
    CHECK(srp_engine_free_blocks(eng) == 10 && srp_engine_free_slots(eng) == 1);
    srp_seq_close(eng, &b);
    srp_seq_close(eng, &c);
    CHECK(srp_engine_free_slots(eng) == 3);
    srp_engine_close(eng);
}

TEST(engine_refuses_bad_steps) {
    srp_engine *eng = open_fixture("nemotron_h_pattern", 2, 32, 16);
    REQUIRE(eng);
    srp_err e = { 0 };
    srp_seq a, b;
    REQUIRE(srp_seq_open(eng, &a, &e) == 0);
    REQUIRE(srp_seq_open(eng, &b, &e) == 0);
    int32_t ok[3] = { 5, 6, 7 }, bad[2] = { 5, 333 }, neg[1] = { -1 };
    srp_mat lg;
    srp_step_item it = { &a, bad, 2, SRP_LOGITS_LAST, 0 };
    CHECK(srp_engine_step(eng, &it, 1, &lg, &e) == SRP_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "333");
    it.tokens = neg;
    it.n_tokens = 1;
    CHECK(srp_engine_step(eng, &it, 1, &lg, &e) == SRP_EINVAL);
    CHECK(a.n_past == 0);
    srp_step_item two[2] = { { &a, ok, 3, SRP_LOGITS_LAST, 0 }, { &a, ok, 1, SRP_LOGITS_LAST, 0 } };
    CHECK(srp_engine_step(eng, two, 2, &lg, &e) == SRP_EINVAL); /* same sequence twice */
    int32_t many[40] = { 0 };
    it = (srp_step_item){ &a, many, 33, SRP_LOGITS_NONE, 0 };
    CHECK(srp_engine_step(eng, &it, 1, &lg, &e) == SRP_EINVAL); /* beyond max_seq_len */
    it = (srp_step_item){ &a, ok, 0, SRP_LOGITS_NONE, 0 };
    CHECK(srp_engine_step(eng, &it, 1, &lg, &e) == SRP_EINVAL); /* no tokens */
    srp_seq closed = { .slot = -1 };
    it = (srp_step_item){ &closed, ok, 3, SRP_LOGITS_NONE, 0 };
    CHECK(srp_engine_step(eng, &it, 1, &lg, &e) == SRP_EINVAL);
    CHECK(a.n_past == 0 && b.n_past == 0);
    /* and a good step still works afterwards */
    it = (srp_step_item){ &a, ok, 3, SRP_LOGITS_LAST, 0 };
    CHECK(srp_engine_step(eng, &it, 1, &lg, &e) == 0);
    CHECK(a.n_past == 3 && lg.rows == 1 && lg.cols == 333);
    srp_seq_close(eng, &a);
    srp_seq_close(eng, &b);
    srp_engine_close(eng);
}

TEST(engine_open_reports_bad_folders) {
    srp_engine_opts o;
    srp_engine_opts_default(&o);
    o.backend = "cpu";
    srp_engine *eng = NULL;
    srp_err e = { 0 };
    CHECK(srp_engine_open("/nonexistent/model", &o, &eng, &e) == SRP_EIO);
    CHECK_STR_CONTAINS(e.msg, "/nonexistent/model/config.json");
    o.backend = "tpu";
    CHECK(srp_engine_open(srp_test_path("fixtures/mamba2_tied"), &o, &eng, &e) == SRP_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "tpu");
    o.backend = "cpu";
    o.max_seqs = -1;
    CHECK(srp_engine_open(srp_test_path("fixtures/mamba2_tied"), &o, &eng, &e) == SRP_EINVAL);
    o.max_seqs = 8;
    o.max_seq_len = 0;
    CHECK(srp_engine_open(srp_test_path("fixtures/mamba2_tied"), &o, &eng, &e) == SRP_EINVAL);
}
