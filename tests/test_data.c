/* Data readers: the MedBank layout on generated folders, MSD NIfTI via
 * synth, `synth` determinism, `prepare` shards == raw layouts, the
 * intensity rules, and every bad-input case (reported, skipped, counted). */
#include "util_test.h"

#include "../pipeline/data.h"
#include "../pipeline/nifti.h"
#include "../pipeline/png_io.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* a shell command that must succeed */
#define sh_ok(...) assert_int_equal(sh(__VA_ARGS__), 0)

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* grey PNG w x h with a square of 255 at (x0,y0) size s in the mask */
static void put_pair(const char *folder, const char *name, int w, int h, int mw, int mh, int value)
{
    char p[2048];
    sb_error err;
    uint8_t *img = malloc((size_t)w * h), *m = calloc((size_t)mw * mh, 1);
    for (int i = 0; i < w * h; i++)
        img[i] = (uint8_t)(value + i % 7);
    for (int y = mh / 4; y < mh / 2; y++)
        for (int x = mw / 4; x < mw / 2; x++)
            m[y * mw + x] = 255;
    snprintf(p, sizeof p, "%s/image/%s", folder, name);
    assert_sb_ok(err, sb_png_write(p, img, w, h, 0, 8, NULL, 0, 1, &err));
    snprintf(p, sizeof p, "%s/mask/%s", folder, name);
    assert_sb_ok(err, sb_png_write(p, m, mw, mh, 0, 8, NULL, 0, 1, &err));
    free(img);
    free(m);
}

static int find_problem(const sb_data *d, const char *case_id, const char *file_part, const char *reason_part)
{
    for (int k = 0; k < sb_data_nproblems(d); k++) {
        const sb_data_problem *p = sb_data_problem_at(d, k);
        if ((!case_id || !strcmp(p->case_id, case_id)) && strstr(p->file, file_part) &&
            strstr(p->reason, reason_part))
            return 1;
    }
    return 0;
}

/* MedBank layout: grouping, ordering, task/modality from the folder name. */
static void test_medbank_layout(void **state)
{
    (void)state;
    const char *root = temp_path("mb_layout");
    sh_ok("rm -rf %s && mkdir -p %s/Kidney_CT_07/image %s/Kidney_CT_07/mask %s/Lesion_MRI_2/image "
       "%s/Lesion_MRI_2/mask",
       root, root, root, root, root);
    char f1[1024], f2[1024], p[2048];
    snprintf(f1, sizeof f1, "%s/Kidney_CT_07", root);
    snprintf(f2, sizeof f2, "%s/Lesion_MRI_2", root);
    put_pair(f1, "case_b_slice_010.png", 20, 16, 20, 16, 10);
    put_pair(f1, "case_b_slice_002.png", 20, 16, 20, 16, 20);
    put_pair(f1, "case_b_slice_001.png", 20, 16, 20, 16, 30);
    put_pair(f1, "single.png", 12, 12, 12, 12, 40);
    put_pair(f1, "case_a_slice_005.png", 8, 8, 8, 8, 50);
    put_pair(f2, "x.png", 9, 7, 9, 7, 60);
    /* entries with and without "./", relative to the folder and to the root */
    snprintf(p, sizeof p, "%s/test.txt", f1);
    write_text(p, "./image/case_b_slice_010.png\n  ./image/case_b_slice_001.png  \n\nimage/case_b_slice_002.png\n"
                  "./Kidney_CT_07/image/single.png\ncase_a_slice_005.png\n");
    snprintf(p, sizeof p, "%s/test.txt", f2);
    write_text(p, "./image/x.png\n");
    sb_error err;
    sb_data *d;
    assert_sb_ok(err, sb_data_open_medbank(&d, root, "test.txt", SB_DATA_QUIET, &err));
    assert_int_equal(sb_data_ndatasets(d), 2);
    assert_int_equal(sb_data_nproblems(d), 0);
    const sb_dataset_spec *s0 = sb_data_dataset(d, 0), *s1 = sb_data_dataset(d, 1);
    assert_string_equal(s0->task, "Kidney");
    assert_string_equal(s0->modality, "CT");
    assert_string_equal(s1->task, "Lesion");
    assert_string_equal(s1->modality, "MR"); /* alias MRI */
    assert_int_equal(sb_data_ncases(d, 0), 3);
    assert_string_equal(sb_data_case_id(d, 0, 0), "case_a");
    assert_string_equal(sb_data_case_id(d, 0, 1), "case_b");
    assert_string_equal(sb_data_case_id(d, 0, 2), "single");
    assert_int_equal(sb_data_case_nslices(d, 0, 1), 3);
    sb_volume v;
    assert_sb_ok(err, sb_data_load(d, 0, 1, &v, &err));
    assert_int_equal(v.nslices, 3);
    assert_int_equal(v.width, 20);
    assert_int_equal(v.height, 16);
    assert_int_equal(v.slice_index[0], 1);
    assert_int_equal(v.slice_index[1], 2);
    assert_int_equal(v.slice_index[2], 10);
    assert_string_equal(v.slice_names[2], "case_b_slice_010.png");
    assert_int_equal(v.rgb[0], 30); /* slice 001 painted with 30 */
    assert_int_equal(v.rgb[1], 30);
    assert_int_equal(v.rgb[20 * 16 * 3], 20);
    assert_int_equal(v.rgb[2 * 20 * 16 * 3], 10);
    assert_int_equal(v.mask[0], 0);
    assert_int_equal(v.mask[4 * 20 + 5], 255);
    assert_string_equal(v.task, "Kidney");
    assert_string_equal(v.modality, "CT");
    assert_string_equal(v.case_id, "case_b");
    assert_true(v.spacing[0] == 0 && v.spacing[2] == 0);
    sb_volume_free(&v);
    assert_sb_ok(err, sb_data_load(d, 0, 2, &v, &err));
    assert_int_equal(v.nslices, 1);
    assert_int_equal(v.width, 12);
    sb_volume_free(&v);
    assert_sb_ok(err, sb_data_load(d, 1, 0, &v, &err));
    assert_int_equal(v.width, 9);
    assert_int_equal(v.height, 7);
    sb_volume_free(&v);
    sb_data_free(d);
}

/* Every bad input: reported with file and reason, skipped, counted; the rest goes on. */
static void test_bad_inputs(void **state)
{
    (void)state;
    const char *root = temp_path("mb_bad");
    sh_ok("rm -rf %s && mkdir -p %s/Liver_CT_01/image %s/Liver_CT_01/mask %s/Foo_Sonar_01/image "
       "%s/Foo_Sonar_01/mask %s/Empty_CT_02/image %s/Empty_CT_02/mask",
       root, root, root, root, root, root, root);
    char f[1024], p[2048];
    snprintf(f, sizeof f, "%s/Liver_CT_01", root);
    put_pair(f, "good.png", 16, 16, 16, 16, 5);
    put_pair(f, "case_v_slice_001.png", 16, 16, 16, 16, 5);
    put_pair(f, "case_v_slice_002.png", 16, 16, 16, 16, 5);
    put_pair(f, "nomask.png", 16, 16, 16, 16, 5);
    snprintf(p, sizeof p, "%s/mask/nomask.png", f);
    remove(p);
    put_pair(f, "sizes.png", 16, 16, 12, 16, 5); /* mask 12 wide */
    put_pair(f, "corrupt.png", 16, 16, 16, 16, 5);
    snprintf(p, sizeof p, "%s/image/corrupt.png", f);
    write_text(p, "\x89PNG\r\n\x1a\nthis is not a png at all, just text pretending to be one");
    put_pair(f, "trunc.png", 64, 64, 64, 64, 5);
    sh_ok("f=%s/image/trunc.png; head -c $(( $(stat -c %%s $f) / 2 )) $f > $f.cut && mv $f.cut $f", f);
    put_pair(f, "case_w_slice_001.png", 16, 16, 16, 16, 5);
    put_pair(f, "case_w_slice_002.png", 20, 16, 20, 16, 5); /* slices of one case disagree */
    snprintf(p, sizeof p, "%s/test.txt", f);
    write_text(p, "./image/good.png\n./image/case_v_slice_001.png\n./image/case_v_slice_002.png\n"
                  "./image/nomask.png\n./image/sizes.png\n./image/corrupt.png\n./image/trunc.png\n"
                  "./image/ghost.png\n./image/case_w_slice_001.png\n./image/case_w_slice_002.png\n");
    snprintf(f, sizeof f, "%s/Foo_Sonar_01", root);
    put_pair(f, "a.png", 8, 8, 8, 8, 1);
    snprintf(p, sizeof p, "%s/test.txt", f);
    write_text(p, "./image/a.png\n");
    snprintf(p, sizeof p, "%s/Empty_CT_02/test.txt", root);
    write_text(p, "\n\n");

    sb_error err;
    sb_data *d;
    assert_sb_ok(err, sb_data_open_medbank(&d, root, "test.txt", SB_DATA_QUIET, &err));
    /* listing: unknown modality and empty dataset skipped whole; ghost and nomask cases skipped */
    assert_int_equal(sb_data_ndatasets(d), 2);
    assert_true(find_problem(d, "", "Foo_Sonar_01", "unknown modality 'Sonar'"));
    assert_true(find_problem(d, "", "Empty_CT_02/test.txt", "empty dataset"));
    assert_true(find_problem(d, "ghost", "image/ghost.png", "names a missing file"));
    assert_true(find_problem(d, "nomask", "mask/nomask.png", "missing mask"));
    assert_int_equal(sb_data_skipped_datasets(d), 2);
    assert_int_equal(sb_data_skipped_cases(d), 2);
    int liver = strcmp(sb_data_dataset(d, 0)->task, "Liver") == 0 ? 0 : 1;
    assert_string_equal(sb_data_dataset(d, liver)->task, "Liver");
    assert_int_equal(sb_data_ncases(d, liver), 6); /* case_v case_w corrupt good sizes trunc */
    int ok = 0, failed = 0;
    for (int c = 0; c < sb_data_ncases(d, liver); c++) {
        sb_volume v;
        sb_error e2;
        if (sb_data_load(d, liver, c, &v, &e2) == SB_OK) {
            ok++;
            sb_volume_free(&v);
        } else {
            failed++;
            assert_null(v.rgb);
        }
    }
    assert_int_equal(ok, 2); /* case_v, good */
    assert_int_equal(failed, 4);
    assert_true(find_problem(d, "corrupt", "corrupt.png", "corrupt PNG"));
    assert_true(find_problem(d, "trunc", "trunc.png", "corrupt PNG"));
    assert_true(find_problem(d, "sizes", "sizes.png", "mask is 12x16"));
    assert_true(find_problem(d, "case_w", "case_w_slice_002.png", "first slice"));
    assert_int_equal(sb_data_skipped_cases(d), 6);
    char *buf = NULL;
    size_t len = 0;
    FILE *mf = open_memstream(&buf, &len);
    sb_data_summary(d, mf);
    fclose(mf);
    assert_non_null(strstr(buf, "skipped 6 cases, 2 datasets"));
    free(buf);
    sb_data_free(d);

    /* without stat() at listing: the same cases end up skipped, found at load time */
    assert_sb_ok(err, sb_data_open_medbank(&d, root, "test.txt", SB_DATA_QUIET | SB_DATA_NO_STAT, &err));
    liver = strcmp(sb_data_dataset(d, 0)->task, "Liver") == 0 ? 0 : 1;
    assert_int_equal(sb_data_ncases(d, liver), 8); /* ghost and nomask are listed now */
    ok = 0;
    for (int c = 0; c < sb_data_ncases(d, liver); c++) {
        sb_volume v;
        sb_error e2;
        if (sb_data_load(d, liver, c, &v, &e2) == SB_OK) {
            ok++;
            sb_volume_free(&v);
        }
    }
    assert_int_equal(ok, 2);
    assert_true(find_problem(d, "ghost", "image/ghost.png", "cannot open"));
    assert_true(find_problem(d, "nomask", "mask/nomask.png", "cannot open"));
    assert_int_equal(sb_data_skipped_cases(d), 6);
    sb_data_free(d);

    /* a missing root is an error of the call, not a skip */
    assert_int_equal(sb_data_open_medbank(&d, "/nonexistent/root", "test.txt", 0, &err), SB_EIO);
    assert_non_null(strstr(err.msg, "/nonexistent/root"));
}

/* synth: deterministic, readable, and the shards read back identical. */
static void compare_volumes(const sb_volume *a, const sb_volume *b)
{
    assert_string_equal(a->dataset, b->dataset);
    assert_string_equal(a->task, b->task);
    assert_string_equal(a->modality, b->modality);
    assert_string_equal(a->case_id, b->case_id);
    assert_string_equal(a->source, b->source);
    assert_int_equal(a->nslices, b->nslices);
    assert_int_equal(a->height, b->height);
    assert_int_equal(a->width, b->width);
    size_t px = (size_t)a->nslices * a->height * a->width;
    assert_memory_equal(a->rgb, b->rgb, px * 3);
    assert_memory_equal(a->mask, b->mask, px);
    assert_memory_equal(a->slice_index, b->slice_index, sizeof(int64_t) * (size_t)a->nslices);
    for (int z = 0; z < a->nslices; z++)
        assert_string_equal(a->slice_names[z], b->slice_names[z]);
    for (int k = 0; k < 3; k++)
        assert_true(a->spacing[k] == b->spacing[k]);
}

static void test_synth_prepare(void **state)
{
    (void)state;
    char dir[1024], dir2[1024], shards[1024];
    snprintf(dir, sizeof dir, "%s", temp_path("synth_a"));
    snprintf(dir2, sizeof dir2, "%s", temp_path("synth_b"));
    snprintf(shards, sizeof shards, "%s", temp_path("shards"));
    char *log = NULL;
    int rc = run_sambench(&log, "synth --out %s --scale tiny", dir);
    if (rc != 0)
        fail_msg("synth: %s", log);
    free(log);
    assert_int_equal(run_sambench(NULL, "synth --out %s", dir2), 0);
    sh_ok("diff -r %s %s", dir, dir2); /* byte-identical */
    assert_int_equal(run_sambench(NULL, "synth --out %s --scale huge", dir2), 2);

    const char *colls[2] = {"medbank100k", "external10"};
    for (int k = 0; k < 2; k++) {
        char man[1200], out[1200];
        snprintf(man, sizeof man, "%s/%s.yaml", dir, colls[k]);
        snprintf(out, sizeof out, "%s/%s", shards, colls[k]);
        rc = run_sambench(&log, "prepare --manifest %s --out %s --data-root %s", man, out, dir);
        if (rc != 0)
            fail_msg("prepare: %s", log);
        assert_non_null(strstr(log, "skipped 0 cases, 0 datasets"));
        free(log);
        sb_error err;
        sb_data *raw, *shd;
        assert_sb_ok(err, sb_data_open(&raw, man, dir, NULL, SB_DATA_QUIET, &err));
        char sman[1300];
        snprintf(sman, sizeof sman, "%s/manifest.yaml", out);
        assert_sb_ok(err, sb_data_open(&shd, sman, NULL, out, SB_DATA_QUIET, &err));
        assert_int_equal(sb_data_ndatasets(raw), k == 0 ? 21 : 10);
        assert_int_equal(sb_data_ndatasets(shd), sb_data_ndatasets(raw));
        assert_int_equal(sb_data_nproblems(raw), 0);
        assert_int_equal(sb_data_nproblems(shd), 0);
        int64_t slices = 0;
        for (int i = 0; i < sb_data_ndatasets(raw); i++) {
            const sb_dataset_spec *s = sb_data_dataset(raw, i);
            assert_string_equal(sb_data_source_kind(shd, i), "shard");
            assert_int_equal(sb_data_ncases(raw, i), 2);
            assert_int_equal(sb_data_ncases(shd, i), 2);
            for (int c = 0; c < 2; c++) {
                sb_volume a, b;
                assert_sb_ok(err, sb_data_load(raw, i, c, &a, &err));
                assert_sb_ok(err, sb_data_load(shd, i, c, &b, &err));
                compare_volumes(&a, &b);
                slices += a.nslices;
                assert_true(a.width >= 40 && a.width <= 128 && a.height >= 40 && a.height <= 128);
                /* every slice has a label (nonempty_only) and the image is not blank */
                size_t px = (size_t)a.width * a.height;
                for (int z = 0; z < a.nslices; z++) {
                    int fg = 0, lo = 255, hi = 0;
                    for (size_t q = 0; q < px; q++) {
                        fg += a.mask[z * px + q] != 0;
                        int g = a.rgb[(z * px + q) * 3];
                        lo = g < lo ? g : lo;
                        hi = g > hi ? g : hi;
                    }
                    assert_true(fg > 0);
                    assert_true(hi - lo > 30);
                }
                int grey = 1;
                for (size_t q = 0; q < px * (size_t)a.nslices && grey; q++)
                    grey = a.rgb[3 * q] == a.rgb[3 * q + 1] && a.rgb[3 * q] == a.rgb[3 * q + 2];
                int colour = !strcmp(s->modality, "Fundus") || !strcmp(s->modality, "Dermoscopy") ||
                             !strcmp(s->modality, "Colonoscopy");
                assert_int_equal(grey, !colour);
                if (s->layout == SB_LAYOUT_MSD) { /* anisotropic spacing from pixdim */
                    assert_true(a.spacing[0] > 0.7 && a.spacing[0] < 0.9);
                    assert_true(a.spacing[2] >= 2.5 && a.spacing[2] <= 5.0);
                    assert_true(a.nslices >= 2);
                } else if (!strcmp(s->modality, "CT") || !strcmp(s->modality, "MR")) {
                    assert_true(a.nslices == 3 || a.nslices == 4); /* a volume */
                    for (int z = 1; z < a.nslices; z++)
                        assert_true(a.slice_index[z] > a.slice_index[z - 1]);
                } else {
                    assert_int_equal(a.nslices, 1); /* 2-D task */
                }
                sb_volume_free(&a);
                sb_volume_free(&b);
            }
        }
        assert_true(slices > (k == 0 ? 100 : 60));
        sb_data_free(raw);
        sb_data_free(shd);
    }
    /* synth's manifests carry the same datasets and published values as configs/datasets/ */
    for (int k = 0; k < 2; k++) {
        char a[1200], b[256];
        snprintf(a, sizeof a, "%s/%s.yaml", dir, colls[k]);
        snprintf(b, sizeof b, "configs/datasets/%s.yaml", colls[k]);
        sb_error e2;
        sb_manifest *ma, *mb;
        assert_sb_ok(e2, sb_manifest_load(&ma, a, &e2));
        assert_sb_ok(e2, sb_manifest_load(&mb, b, &e2));
        assert_int_equal(ma->n, mb->n);
        for (int i = 0; i < ma->n; i++) {
            const sb_dataset_spec *x = &ma->d[i], *y = sb_manifest_find(mb, x->name);
            if (!y)
                fail_msg("synth dataset %s is not in %s", x->name, b);
            assert_string_equal(x->task, y->task);
            assert_string_equal(x->modality, y->modality);
            assert_int_equal(x->layout, y->layout);
            assert_int_equal(x->nlabels, y->nlabels);
            assert_memory_equal(x->label_ids, y->label_ids, sizeof(int) * (size_t)x->nlabels);
            assert_int_equal(x->intensity, y->intensity);
            assert_int_equal(x->channel, y->channel);
            for (int q = 0; q < SB_PUBLISHED_MODELS; q++)
                assert_true(fabs(x->published_dice[q] - y->published_dice[q]) < 1e-9);
        }
        sb_manifest_free(ma);
        sb_manifest_free(mb);
    }
    /* the liver tumour target is a subset of the Task03 label volume (label 2 only) */
    sb_error err;
    sb_data *d;
    char man[1200];
    snprintf(man, sizeof man, "%s/external10.yaml", dir);
    assert_sb_ok(err, sb_data_open(&d, man, NULL, NULL, SB_DATA_QUIET, &err));
    int li = -1, lt = -1;
    for (int i = 0; i < sb_data_ndatasets(d); i++) {
        if (!strcmp(sb_data_dataset(d, i)->name, "Liver_CT_Task03"))
            li = i;
        if (!strcmp(sb_data_dataset(d, i)->name, "LiverTumor_CT_Task03"))
            lt = i;
    }
    assert_true(li >= 0 && lt >= 0);
    sb_volume a, b;
    assert_sb_ok(err, sb_data_load(d, li, 0, &a, &err));
    assert_sb_ok(err, sb_data_load(d, lt, 0, &b, &err));
    size_t px = (size_t)a.width * a.height;
    for (int z = 0; z < b.nslices; z++) { /* tumour slices are a subset; liver excludes the tumour */
        int za = -1;
        for (int q = 0; q < a.nslices; q++)
            if (a.slice_index[q] == b.slice_index[z])
                za = q;
        assert_true(za >= 0);
        for (size_t q = 0; q < px; q++)
            assert_false(a.mask[za * px + q] && b.mask[z * px + q]);
    }
    sb_volume_free(&a);
    sb_volume_free(&b);
    sb_data_free(d);
}

/* NIfTI bad input: corrupt, truncated, label/image sizes disagree, missing label, split naming a missing case. */
static void test_bad_nifti(void **state)
{
    (void)state;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", temp_path("synth_bad"));
    assert_int_equal(run_sambench(NULL, "synth --out %s", dir), 0);
    char t9[1200], p[1400];
    snprintf(t9, sizeof t9, "%s/external/Task09_Spleen", dir);
    /* case 1 label truncated; case 2 image replaced by garbage */
    sh_ok("f=%s/labelsTr/spleen_001.nii.gz; head -c 300 $f > $f.cut && mv $f.cut $f", t9);
    snprintf(p, sizeof p, "%s/imagesTr/spleen_002.nii.gz", t9);
    write_text(p, "not a nifti file");
    /* Task09: a third case whose label has another size */
    sb_error err;
    sb_nifti im, lb;
    int64_t di[3] = {10, 8, 3}, dl[3] = {10, 9, 3};
    assert_sb_ok(err, sb_nifti_init(&im, SB_NIFTI_INT16, 3, di, NULL, &err));
    assert_sb_ok(err, sb_nifti_init(&lb, SB_NIFTI_UINT8, 3, dl, NULL, &err));
    ((uint8_t *)lb.data)[5] = 1;
    snprintf(p, sizeof p, "%s/imagesTr/spleen_003.nii.gz", t9);
    assert_sb_ok(err, sb_nifti_write(&im, p, &err));
    snprintf(p, sizeof p, "%s/labelsTr/spleen_003.nii.gz", t9);
    assert_sb_ok(err, sb_nifti_write(&lb, p, &err));
    sb_nifti_free(&im);
    sb_nifti_free(&lb);
    /* a case with a NaN voxel */
    assert_sb_ok(err, sb_nifti_init(&im, SB_NIFTI_FLOAT32, 3, di, NULL, &err));
    assert_sb_ok(err, sb_nifti_init(&lb, SB_NIFTI_UINT8, 3, di, NULL, &err));
    ((float *)im.data)[7] = NAN;
    ((uint8_t *)lb.data)[7] = 1;
    snprintf(p, sizeof p, "%s/imagesTr/spleen_006.nii.gz", t9);
    assert_sb_ok(err, sb_nifti_write(&im, p, &err));
    snprintf(p, sizeof p, "%s/labelsTr/spleen_006.nii.gz", t9);
    assert_sb_ok(err, sb_nifti_write(&lb, p, &err));
    sb_nifti_free(&im);
    sb_nifti_free(&lb);
    /* and a case without a label file */
    snprintf(p, sizeof p, "%s/imagesTr/spleen_004.nii.gz", t9);
    sh_ok("cp %s/imagesTr/spleen_003.nii.gz %s", t9, p);
    snprintf(p, sizeof p, "%s/dataset.json", t9);
    write_text(p, "{\"name\": \"Spleen\", \"labels\": {\"0\": \"bg\"}, \"training\": ["
                  "{\"image\": \"./imagesTr/spleen_001.nii.gz\", \"label\": \"./labelsTr/spleen_001.nii.gz\"},"
                  "{\"image\": \"./imagesTr/spleen_002.nii.gz\", \"label\": \"./labelsTr/spleen_002.nii.gz\"},"
                  "{\"image\": \"./imagesTr/spleen_003.nii.gz\", \"label\": \"./labelsTr/spleen_003.nii.gz\"},"
                  "{\"image\": \"./imagesTr/spleen_004.nii.gz\", \"label\": \"./labelsTr/spleen_004.nii.gz\"},"
                  "{\"image\": \"./imagesTr/spleen_005.nii.gz\", \"label\": \"./labelsTr/spleen_005.nii.gz\"},"
                  "{\"image\": \"./imagesTr/spleen_006.nii.gz\", \"label\": \"./labelsTr/spleen_006.nii.gz\"}],"
                  " \"test\": []}");
    /* Task10: a split file naming a case that does not exist (plus a real one) */
    char t10[1200];
    snprintf(t10, sizeof t10, "%s/external/Task10_Colon", dir);
    snprintf(p, sizeof p, "%s/cases.txt", t10);
    write_text(p, "colon_001\ncolon_999\n");
    snprintf(p, sizeof p, "%s/external10.yaml", dir);
    sh_ok("sed -i '/path: \"external\\/Task10_Colon\"/{n;s/split: \"\"/split: \"cases.txt\"/}' %s", p);
    /* Task04: corrupt dataset.json */
    snprintf(p, sizeof p, "%s/external/Task04_Hippocampus/dataset.json", dir);
    write_text(p, "{\"training\": [ {\"image\": ");

    sb_data *d;
    snprintf(p, sizeof p, "%s/external10.yaml", dir);
    assert_sb_ok(err, sb_data_open(&d, p, NULL, NULL, SB_DATA_QUIET, &err));
    assert_true(find_problem(d, "spleen_004", "labelsTr/spleen_004.nii.gz", "missing label"));
    assert_true(find_problem(d, "spleen_005", "imagesTr/spleen_005.nii.gz", "missing image"));
    assert_true(find_problem(d, "colon_999", "colon_999", "does not exist"));
    assert_true(find_problem(d, "", "Task04_Hippocampus/dataset.json", "corrupt dataset.json"));
    int sp = -1, co = -1;
    for (int i = 0; i < sb_data_ndatasets(d); i++) {
        if (!strcmp(sb_data_dataset(d, i)->name, "Spleen_CT_Task09"))
            sp = i;
        if (!strcmp(sb_data_dataset(d, i)->name, "ColonTumor_CT_Task10"))
            co = i;
    }
    assert_int_equal(sb_data_ncases(d, co), 1);
    assert_int_equal(sb_data_ncases(d, sp), 4);
    for (int c = 0; c < 4; c++) {
        sb_volume v;
        assert_int_not_equal(sb_data_load(d, sp, c, &v, &err), SB_OK);
        assert_null(v.rgb);
    }
    assert_true(find_problem(d, "spleen_001", "labelsTr/spleen_001.nii.gz", ""));
    assert_true(find_problem(d, "spleen_002", "imagesTr/spleen_002.nii.gz", ""));
    assert_true(find_problem(d, "spleen_003", "labelsTr/spleen_003.nii.gz", "label is 10x9x3"));
    assert_true(find_problem(d, "spleen_006", "imagesTr/spleen_006.nii.gz", "NaN or infinite"));
    sb_volume v;
    assert_sb_ok(err, sb_data_load(d, co, 0, &v, &err)); /* the rest goes on */
    sb_volume_free(&v);
    assert_int_equal(sb_data_skipped_cases(d), 7);
    assert_int_equal(sb_data_skipped_datasets(d), 1);
    sb_data_free(d);

    /* prepare on the damaged collection: exit 0, shards for the good data, skips listed */
    char *log = NULL;
    snprintf(p, sizeof p, "%s/external10.yaml", dir);
    int rc = run_sambench(&log, "prepare --manifest %s --out %s/shards", p, dir);
    if (rc != 0)
        fail_msg("prepare: %s", log);
    assert_non_null(strstr(log, "skipped 7 cases, 1 datasets"));
    assert_non_null(strstr(log, "spleen_003"));
    free(log);
    /* nothing readable at all: exit status 2, every dataset listed as skipped */
    sh_ok("mkdir -p %s/empty_root", dir);
    rc = run_sambench(&log, "prepare --manifest configs/datasets/medbank100k.yaml --data-root %s/empty_root --out %s/s2",
                      dir, dir);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(log, "skipped 0 cases, 21 datasets"));
    assert_non_null(strstr(log, "Polyp_Colonoscopy_*: no dataset folder matches"));
    free(log);
}

/* The intensity rules on hand-computed values. */
static void test_intensity(void **state)
{
    (void)state;
    sb_dataset_spec s;
    sb_dataset_spec_defaults(&s);
    s.intensity = SB_INTENSITY_CT_WINDOW;
    s.window_level = 40;
    s.window_width = 400; /* [-160, 240] */
    double x[6] = {-1000, -160, 0, 40, 240, 3000};
    uint8_t u[6];
    sb_intensity_to_u8(&s, x, 6, u);
    /* (v + 160) / 400 * 255, truncated */
    assert_int_equal(u[0], 0);
    assert_int_equal(u[1], 0);
    assert_int_equal(u[2], 102); /* 160/400*255 = 102 */
    assert_int_equal(u[3], 127); /* 200/400*255 = 127.5 */
    assert_int_equal(u[4], 255);
    assert_int_equal(u[5], 255);

    s.intensity = SB_INTENSITY_PERCENTILE;
    s.pct_lo = 0.5;
    s.pct_hi = 99.5;
    /* zeros plus 1..201: positives n=201, p0.5 at pos 1.0 -> 2, p99.5 at pos 199 -> 200 */
    double y[205];
    uint8_t v[205];
    for (int i = 0; i < 4; i++)
        y[i] = 0;
    for (int i = 0; i < 201; i++)
        y[4 + (i * 37) % 201] = i + 1; /* shuffled */
    sb_intensity_to_u8(&s, y, 205, v);
    for (int i = 0; i < 205; i++) {
        double val = y[i];
        int expect;
        if (val == 0)
            expect = 0;
        else {
            double c = val < 2 ? 2 : val > 200 ? 200 : val;
            expect = (int)((c - 2) / 198.0 * 255.0);
        }
        assert_int_equal(v[i], expect);
    }
    s.intensity = SB_INTENSITY_NONE;
    double z[4] = {-5, 17.9, 255, 999};
    sb_intensity_to_u8(&s, z, 4, u);
    assert_int_equal(u[0], 0);
    assert_int_equal(u[1], 17);
    assert_int_equal(u[2], 255);
    assert_int_equal(u[3], 255);
}

/* MSD slicing along each axis, channel choice, scl_slope/inter, label ids, spacing. */
static void test_msd_axes(void **state)
{
    (void)state;
    const char *root = temp_path("msd_axes");
    sh_ok("rm -rf %s && mkdir -p %s/T/imagesTr %s/T/labelsTr", root, root, root);
    const int64_t n0 = 5, n1 = 4, n2 = 3, nc = 2;
    const double sp[4] = {0.5, 0.75, 3.0, 1.0};
    int64_t dims[4] = {n0, n1, n2, nc};
    sb_error err;
    sb_nifti im, lb;
    assert_sb_ok(err, sb_nifti_init(&im, SB_NIFTI_INT16, 4, dims, sp, &err));
    assert_sb_ok(err, sb_nifti_init(&lb, SB_NIFTI_UINT8, 3, dims, sp, &err));
    im.scl_slope = 2;
    im.scl_inter = 10;
    /* channel 1 holds raw = i + 10 j + 40 k -> value 2*raw + 10 (all <= 255 with intensity none) */
    for (int64_t c = 0; c < nc; c++)
        for (int64_t k = 0; k < n2; k++)
            for (int64_t j = 0; j < n1; j++)
                for (int64_t i = 0; i < n0; i++) {
                    int64_t idx = i + n0 * (j + n1 * k);
                    ((int16_t *)im.data)[idx + c * n0 * n1 * n2] = (int16_t)(c ? i + 10 * j + 40 * k : 999);
                    ((uint8_t *)lb.data)[idx] = (uint8_t)((i + j + k) % 4);
                }
    char p[2048];
    snprintf(p, sizeof p, "%s/T/imagesTr/t_001.nii.gz", root);
    assert_sb_ok(err, sb_nifti_write(&im, p, &err));
    snprintf(p, sizeof p, "%s/T/labelsTr/t_001.nii.gz", root);
    assert_sb_ok(err, sb_nifti_write(&lb, p, &err));
    sb_nifti_free(&im);
    sb_nifti_free(&lb);

    sb_manifest m = {0};
    sb_dataset_spec specs[3];
    m.n = 3;
    m.d = specs;
    for (int a = 0; a < 3; a++) {
        sb_dataset_spec_defaults(&specs[a]);
        snprintf(specs[a].name, sizeof specs[a].name, "axis%d", a);
        snprintf(specs[a].task, sizeof specs[a].task, "T");
        snprintf(specs[a].modality, sizeof specs[a].modality, "MR");
        snprintf(specs[a].path, sizeof specs[a].path, "T");
        specs[a].layout = SB_LAYOUT_MSD;
        specs[a].split[0] = '\0'; /* no dataset.json: imagesTr listing */
        specs[a].slice_axis = a;
        specs[a].channel = 1;
        specs[a].intensity = SB_INTENSITY_NONE;
        specs[a].label_ids[0] = 1;
        specs[a].label_ids[1] = 3;
        specs[a].nlabels = 2;
    }
    sb_data *d;
    assert_sb_ok(err, sb_data_open_manifest(&d, &m, root, NULL, SB_DATA_QUIET, &err));
    assert_int_equal(sb_data_nproblems(d), 0);
    for (int a = 0; a < 3; a++) {
        assert_int_equal(sb_data_ncases(d, a), 1);
        assert_string_equal(sb_data_case_id(d, a, 0), "t_001");
        sb_volume v;
        assert_sb_ok(err, sb_data_load(d, a, 0, &v, &err));
        const int64_t Z = a == 2 ? n2 : a == 1 ? n1 : n0;
        assert_int_equal(v.nslices, Z);
        const double want_sp[3][3] = {{0.75, 3.0, 0.5}, {0.5, 3.0, 0.75}, {0.5, 0.75, 3.0}};
        for (int q = 0; q < 3; q++)
            assert_true(fabs(v.spacing[q] - want_sp[a][q]) < 1e-6);
        for (int z = 0; z < v.nslices; z++)
            for (int y = 0; y < v.height; y++)
                for (int x = 0; x < v.width; x++) {
                    int64_t i, j, k;
                    if (a == 2) { i = x; j = y; k = z; }
                    else if (a == 1) { i = x; j = z; k = y; }
                    else { i = z; j = x; k = y; }
                    size_t o = ((size_t)z * v.height + y) * v.width + x;
                    assert_int_equal(v.rgb[3 * o], 2 * (i + 10 * j + 40 * k) + 10);
                    int lab = (int)((i + j + k) % 4);
                    assert_int_equal(v.mask[o], lab == 1 || lab == 3 ? 255 : 0);
                }
        assert_int_equal(v.slice_index[Z - 1], Z - 1);
        sb_volume_free(&v);
    }
    sb_data_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_medbank_layout),  cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_synth_prepare),   cmocka_unit_test(test_bad_nifti),
        cmocka_unit_test(test_intensity),       cmocka_unit_test(test_msd_axes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
