/*
 * `sambench synth`: a deterministic miniature of MedBank-100k and of the
 * external datasets, in the real formats (see data.h, sb_synth_write).
 *
 * Every image is a smooth "organ" (a wobbly ellipse whose centre and radii
 * drift through the slices) on a modality-typical background with a little
 * deterministic noise. All randomness comes from SplitMix64 seeded by
 * (task, case), so the output is byte-identical on every run and machine.
 */
#include "data.h"
#include "nifti.h"
#include "png_io.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    const char *task, *modality, *folder_modality;
    int volume;     /* 1: CT/MR volumes of several slices; 0: 2-D one-slice cases */
    int rgb;        /* RGB PNGs */
    const char *sources;
    double dice[6]; /* published (PROTOCOL.md 5) */
} mb_task;

/* The 21 MedBank tasks (PROTOCOL.md 5), published Dice SAMed-2 / MedSAM-2 / SAM2 / MedSAM / SAM / U-Net. */
static const mb_task mb_tasks[21] = {
    {"OpticCup", "Fundus", "Fundus", 0, 1, "REFUGE,RIM-ONE_r3", {.8971, .4040, .6209, .8643, .6230, .8073}},
    {"Melanoma", "Dermoscopy", "Dermoscopy", 0, 1, "ISIC2018", {.9119, .6877, .5293, .9106, .8398, .8169}},
    {"Lung", "X-Ray", "X-Ray", 0, 0, "Covid-QU-Ex", {.9007, .6110, .6668, .9001, .6840, .9700}},
    {"Spleen", "CT", "CT", 1, 0, "BTCV,AMOS", {.8566, .8260, .4441, .8755, .8402, .5239}},
    {"Esophagus", "CT", "CT", 1, 0, "BTCV,AMOS", {.6881, .5670, .1139, .6672, .6879, .3464}},
    {"Liver", "CT", "CT", 1, 0, "BTCV,AMOS,LiTS", {.8332, .8159, .6752, .8330, .7935, .8730}},
    {"Stomach", "CT", "CT", 1, 0, "BTCV,AMOS", {.8347, .7131, .4604, .8325, .8039, .4383}},
    {"InferiorVenaCava", "CT", "CT", 1, 0, "BTCV,AMOS", {.7800, .6821, .1738, .7799, .7497, .5471}},
    {"Pancreas", "CT", "CT", 1, 0, "BTCV,AMOS", {.5785, .5537, .1343, .5775, .5542, .2569}},
    {"AdrenalGland", "CT", "CT", 1, 0, "BTCV,AMOS", {.2886, .2838, .0194, .2853, .1976, .1869}},
    {"KidneyTumor", "CT", "CT", 1, 0, "KiTS", {.8212, .7211, .4182, .8210, .8122, .6486}},
    {"LiverTumor", "CT", "CT", 1, 0, "LiTS", {.4443, .4101, .2102, .4440, .3837, .4528}},
    {"LungTumor", "CT", "CT", 1, 0, "MSD Lung", {.6709, .5225, .3204, .6707, .6618, .5492}},
    {"Liver", "MR", "MR", 1, 0, "AMOS", {.8779, .7627, .6895, .8773, .8313, .8748}},
    {"Aorta", "MR", "MR", 1, 0, "AMOS", {.9033, .7016, .5158, .9029, .9012, .9315}},
    {"InferiorVenaCava", "MR", "MR", 1, 0, "AMOS", {.8007, .6454, .3014, .8007, .8006, .6742}},
    {"Gallbladder", "MR", "MR", 1, 0, "AMOS", {.8256, .6684, .3602, .8436, .8450, .6879}},
    {"Esophagus", "MR", "MR", 1, 0, "AMOS", {.6402, .5075, .2865, .6401, .6395, .6453}},
    {"Stomach", "MR", "MR", 1, 0, "AMOS", {.7845, .7287, .5386, .7843, .7540, .7139}},
    {"Polyp", "Colonoscopy", "Colonoscopy", 0, 1, "Kvasir-SEG,CVC-ClinicDB,CVC-ColonDB",
     {.8183, .6966, .3535, .8181, .7416, .2391}},
    {"LVepi", "Echocardiography", "Echo", 0, 0, "CAMUS", {.5733, .4983, .4404, .3412, .1667, .7914}},
};

typedef struct {
    const char *name, *task, *modality;
    int msd; /* 0: PNG folder */
    const char *folder;
    int rgb;
    const char *sources;
    int labels[3], nlabels, channel, nchannels, intensity, nifti_version, gz, datatype;
    double dice[6];
} ext_ds;

static const ext_ds ext_sets[10] = {
    {"Thyroid_US", "Thyroid", "US", 0, "Thyroid_US", 0, "Kaggle thyroid ultrasound", {1}, 1, 0, 1, 0, 1, 1, 0,
     {.8663, .6756, .4967, .8863, .8655, .8052}},
    {"OpticCup_Fundus_DrishtiGS", "OpticCup", "Fundus", 0, "OpticCup_Fundus_DrishtiGS", 1, "Drishti-GS", {1}, 1, 0,
     1, 0, 1, 1, 0, {.8936, .3820, .5589, .8823, .6064, .8833}},
    {"Melanoma_Dermoscopy_ISIC2016", "Melanoma", "Dermoscopy", 0, "Melanoma_Dermoscopy_ISIC2016", 1, "ISIC 2016",
     {1}, 1, 0, 1, 0, 1, 1, 0, {.9167, .6601, .6158, .9364, .8322, .8884}},
    {"Hippocampus_MR_Task04", "Hippocampus", "MR", 1, "Task04_Hippocampus", 0, "MSD Task04", {1, 2}, 2, 0, 1,
     SB_INTENSITY_PERCENTILE, 1, 0, SB_NIFTI_FLOAT32, {.8010, .5650, .5237, .7410, .7196, .8097}},
    {"Prostate_MR_Task05", "Prostate", "MR", 1, "Task05_Prostate", 0, "MSD Task05", {1, 2}, 2, 0, 2,
     SB_INTENSITY_PERCENTILE, 2, 1, SB_NIFTI_FLOAT32, {.8601, .7188, .6534, .8546, .8302, .8406}},
    {"BrainTumor_MR_Task01", "BrainTumor", "MR", 1, "Task01_BrainTumour", 0, "MSD Task01", {1, 2, 3}, 3, 0, 4,
     SB_INTENSITY_PERCENTILE, 1, 1, SB_NIFTI_INT16, {.6726, .5852, .4317, .5925, .5618, .6589}},
    {"Liver_CT_Task03", "Liver", "CT", 1, "Task03_Liver", 0, "MSD Task03", {1}, 1, 0, 1, SB_INTENSITY_CT_WINDOW, 1,
     1, SB_NIFTI_INT16, {.7738, .6996, .4457, .7636, .6771, .7501}},
    {"LiverTumor_CT_Task03", "LiverTumor", "CT", 1, "Task03_Liver", 0, "MSD Task03", {2}, 1, 0, 1,
     SB_INTENSITY_CT_WINDOW, 1, 1, SB_NIFTI_INT16, {.4295, .3996, .2047, .4192, .3914, .4914}},
    {"Spleen_CT_Task09", "Spleen", "CT", 1, "Task09_Spleen", 0, "MSD Task09", {1}, 1, 0, 1, SB_INTENSITY_CT_WINDOW, 1,
     1, SB_NIFTI_FLOAT32, {.8813, .7732, .7006, .8789, .8650, .8937}},
    {"ColonTumor_CT_Task10", "ColonTumor", "CT", 1, "Task10_Colon", 0, "MSD Task10", {1}, 1, 0, 1,
     SB_INTENSITY_CT_WINDOW, 1, 1, SB_NIFTI_UINT16, {.7005, .6306, .2464, .6955, .6432, .6901}},
};

typedef struct {
    int cases, slices, min_side, max_side, vol_xy, vol_z;
} scale_cfg;

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double rng_unit(uint64_t *s) { return (double)(rng_next(s) >> 11) / 9007199254740992.0; }

static int mkdirs(const char *path, sb_error *err)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0775) != 0 && errno != EEXIST)
                return sb_fail(err, SB_EIO, "%s: cannot create directory: %s", buf, strerror(errno));
            *p = '/';
        }
    if (mkdir(buf, 0775) != 0 && errno != EEXIST)
        return sb_fail(err, SB_EIO, "%s: cannot create directory: %s", buf, strerror(errno));
    return SB_OK;
}

/* The organ of case parameters p at slice fraction t: signed "inside-ness"
 * r(x,y) in units of the local radius (< 1 inside). */
typedef struct {
    double cx0, cy0, cx1, cy1, rx, ry, wob, phase, grow;
} organ;

static organ organ_make(uint64_t *s, double w, double h, double size)
{
    organ o;
    o.cx0 = w * (0.35 + 0.3 * rng_unit(s));
    o.cy0 = h * (0.35 + 0.3 * rng_unit(s));
    o.cx1 = o.cx0 + w * (rng_unit(s) - 0.5) * 0.15;
    o.cy1 = o.cy0 + h * (rng_unit(s) - 0.5) * 0.15;
    o.rx = w * size * (0.8 + 0.4 * rng_unit(s));
    o.ry = h * size * (0.8 + 0.4 * rng_unit(s));
    o.wob = 0.08 + 0.1 * rng_unit(s);
    o.phase = 6.2831853 * rng_unit(s);
    o.grow = 0.5 + 0.5 * rng_unit(s);
    return o;
}

static double organ_r(const organ *o, double t, double x, double y)
{
    double cx = o->cx0 + (o->cx1 - o->cx0) * t, cy = o->cy0 + (o->cy1 - o->cy0) * t;
    double sc = 0.6 + 0.4 * sin(3.14159265 * (0.15 + 0.7 * t)) * o->grow + 0.4 * (1 - o->grow);
    double dx = (x - cx) / (o->rx * sc), dy = (y - cy) / (o->ry * sc);
    double th = atan2(dy, dx);
    double rr = sqrt(dx * dx + dy * dy);
    return rr / (1.0 + o->wob * sin(3 * th + o->phase + 2 * t));
}

static uint8_t clamp8(double v) { return v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)(v + 0.5); }

/* Paints a 2-D slice: modality-typical background + organ; mask 0/255. */
static void paint(const char *modality, int rgb, const organ *o, double t, int w, int h, uint64_t *s, uint8_t *img,
                  uint8_t *mask)
{
    double bg[3] = {60, 60, 60}, fg[3] = {160, 160, 160}, noise = 8;
    if (!strcmp(modality, "CT")) {
        bg[0] = bg[1] = bg[2] = 70;
        fg[0] = fg[1] = fg[2] = 150;
    } else if (!strcmp(modality, "MR")) {
        bg[0] = bg[1] = bg[2] = 40;
        fg[0] = fg[1] = fg[2] = 190;
    } else if (!strcmp(modality, "X-Ray")) {
        bg[0] = bg[1] = bg[2] = 200;
        fg[0] = fg[1] = fg[2] = 50;
    } else if (!strcmp(modality, "Fundus")) {
        bg[0] = 190; bg[1] = 80; bg[2] = 40;
        fg[0] = 250; fg[1] = 220; fg[2] = 130;
    } else if (!strcmp(modality, "Dermoscopy")) {
        bg[0] = 215; bg[1] = 165; bg[2] = 145;
        fg[0] = 95; fg[1] = 55; fg[2] = 45;
    } else if (!strcmp(modality, "Colonoscopy")) {
        bg[0] = 190; bg[1] = 95; bg[2] = 95;
        fg[0] = 235; fg[1] = 150; fg[2] = 125;
    } else { /* echo, ultrasound: speckle */
        bg[0] = bg[1] = bg[2] = 50;
        fg[0] = fg[1] = fg[2] = 120;
        noise = 30;
    }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double r = organ_r(o, t, x + 0.5, y + 0.5);
            double a = r < 0.9 ? 1.0 : r > 1.1 ? 0.0 : (1.1 - r) / 0.2; /* soft edge */
            double shade = 0.85 + 0.3 * (double)(x + y) / (w + h);
            double nz = (rng_unit(s) - 0.5) * 2 * noise;
            for (int c = 0; c < (rgb ? 3 : 1); c++) {
                double v = (bg[c] * shade) * (1 - a) + fg[c] * a + nz;
                img[(size_t)(y * w + x) * (rgb ? 3 : 1) + c] = clamp8(v);
            }
            mask[y * w + x] = r < 1.0 ? 255 : 0;
        }
}

static int write_split(const char *folder, const char *name, char **lines, int n, sb_error *err)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", folder, name);
    FILE *f = fopen(p, "w");
    if (!f)
        return sb_fail(err, SB_EIO, "%s: cannot create", p);
    for (int i = 0; i < n; i++)
        fprintf(f, "./image/%s\n", lines[i]);
    if (fclose(f) != 0)
        return sb_fail(err, SB_EIO, "%s: write error", p);
    return SB_OK;
}

/* One PNG-folder dataset: cases x slices (slices 1 = 2-D one-slice cases). */
static int png_dataset(const char *folder, const char *modality, int rgb, int volume, const scale_cfg *sc,
                       uint64_t seed, sb_error *err)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/image", folder);
    int rc = mkdirs(p, err);
    snprintf(p, sizeof p, "%s/mask", folder);
    if (rc == SB_OK)
        rc = mkdirs(p, err);
    if (rc != SB_OK)
        return rc;
    uint64_t s = seed;
    const int span = sc->max_side - sc->min_side;
    const int w = sc->min_side + (int)(rng_unit(&s) * span) / 8 * 8;
    const int h = sc->min_side + (int)(rng_unit(&s) * span) / 8 * 8;
    const int nsl = volume ? sc->slices + (int)(rng_unit(&s) * 2) : 1;
    char **names = calloc((size_t)sc->cases * (size_t)(nsl + 1), sizeof *names);
    uint8_t *img = malloc((size_t)w * h * 3), *mask = malloc((size_t)w * h);
    if (!names || !img || !mask) {
        free(names);
        free(img);
        free(mask);
        return sb_fail(err, SB_ENOMEM, "out of memory");
    }
    int nn = 0;
    for (int c = 0; c < sc->cases && rc == SB_OK; c++) {
        organ o = organ_make(&s, w, h, volume ? 0.18 : 0.25);
        for (int z = 0; z < nsl && rc == SB_OK; z++) {
            char nm[128];
            if (volume)
                snprintf(nm, sizeof nm, "case_%04d_slice_%03d.png", c + 1, z + 1);
            else
                snprintf(nm, sizeof nm, "img_%04d.png", c + 1);
            double t = nsl > 1 ? (double)z / (nsl - 1) : 0.5;
            paint(modality, rgb, &o, t, w, h, &s, img, mask);
            snprintf(p, sizeof p, "%s/image/%s", folder, nm);
            rc = sb_png_write(p, img, w, h, rgb ? 2 : 0, 8, NULL, 0, 6, err);
            snprintf(p, sizeof p, "%s/mask/%s", folder, nm);
            if (rc == SB_OK)
                rc = sb_png_write(p, mask, w, h, 0, 8, NULL, 0, 6, err);
            names[nn++] = strdup(nm);
        }
    }
    if (rc == SB_OK)
        rc = write_split(folder, "test.txt", names, nn, err);
    int first = volume ? nsl : 1; /* train/val: the format's other splits, naming the first case */
    if (rc == SB_OK)
        rc = write_split(folder, "train.txt", names, first < nn ? first : nn, err);
    if (rc == SB_OK)
        rc = write_split(folder, "val.txt", names, first < nn ? first : nn, err);
    for (int i = 0; i < nn; i++)
        free(names[i]);
    free(names);
    free(img);
    free(mask);
    return rc;
}

/* One MSD task folder: imagesTr/labelsTr/dataset.json. Label values: 1..n
 * nested/adjacent structures as the task's labels. */
static int msd_dataset(const char *folder, const ext_ds *e, const scale_cfg *sc, uint64_t seed, sb_error *err)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/imagesTr", folder);
    int rc = mkdirs(p, err);
    snprintf(p, sizeof p, "%s/labelsTr", folder);
    if (rc == SB_OK)
        rc = mkdirs(p, err);
    if (rc != SB_OK)
        return rc;
    uint64_t s = seed;
    const int X = sc->vol_xy, Y = sc->vol_xy - 8, Z = sc->vol_z;
    const double sp[4] = {0.78 + 0.1 * rng_unit(&s), 0.78 + 0.1 * rng_unit(&s), 2.5 + 2.5 * rng_unit(&s), 1};
    const int ct = !strcmp(e->modality, "CT");
    const char *ext = e->gz ? ".nii.gz" : ".nii";
    const char *short_name = strchr(e->folder, '_') ? strchr(e->folder, '_') + 1 : e->folder;
    char json[16384];
    int jl = snprintf(json, sizeof json,
                      "{\n    \"name\": \"%s\",\n    \"description\": \"sambench synthetic miniature\",\n"
                      "    \"modality\": {\"0\": \"%s\"},\n    \"labels\": {\"0\": \"background\", \"1\": \"a\", \"2\": \"b\", \"3\": \"c\"},\n"
                      "    \"numTraining\": %d,\n    \"numTest\": 0,\n    \"training\": [",
                      short_name, e->modality, sc->cases);
    for (int c = 0; c < sc->cases && rc == SB_OK; c++) {
        char cid[64];
        snprintf(cid, sizeof cid, "%s_%03d", short_name, c + 1);
        for (char *q = cid; *q; q++)
            *q = (char)(*q >= 'A' && *q <= 'Z' ? *q - 'A' + 'a' : *q);
        organ o = organ_make(&s, X, Y, 0.22);
        const int nch = e->nchannels;
        int64_t dims[4] = {X, Y, Z, nch};
        sb_nifti im, lb;
        memset(&im, 0, sizeof im);
        memset(&lb, 0, sizeof lb);
        rc = sb_nifti_init(&im, e->datatype, nch > 1 ? 4 : 3, dims, sp, err);
        if (rc == SB_OK)
            rc = sb_nifti_init(&lb, SB_NIFTI_UINT8, 3, dims, sp, err);
        if (rc != SB_OK) {
            sb_nifti_free(&im);
            break;
        }
        im.version = e->nifti_version;
        lb.version = e->nifti_version;
        /* ColonTumor: unsigned raw values with an offset (exercises scl_inter) */
        if (e->datatype == SB_NIFTI_UINT16) {
            im.scl_slope = 1;
            im.scl_inter = -1024;
        }
        for (int z = 0; z < Z; z++) {
            double t = Z > 1 ? (double)z / (Z - 1) : 0.5;
            for (int y = 0; y < Y; y++)
                for (int x = 0; x < X; x++) {
                    double r = organ_r(&o, t, x + 0.5, y + 0.5);
                    /* the body: an ellipse filling most of the field */
                    double bx = (x - X / 2.0) / (0.47 * X), by = (y - Y / 2.0) / (0.47 * Y);
                    int body = bx * bx + by * by < 1;
                    int lab = 0;
                    if (r < 1.0)
                        lab = 1;
                    if (e->nlabels >= 2 && r < 1.0 && x > o.cx0 + (o.cx1 - o.cx0) * t)
                        lab = 2; /* adjacent part (hippocampus head/tail, prostate zones) */
                    if (e->nlabels >= 3 && r < 0.45)
                        lab = 3; /* innermost core (enhancing tumour) */
                    if (!strcmp(e->folder, "Task03_Liver") && r < 0.35 && z > 0 && z < Z - 1)
                        lab = 2; /* a tumour inside the liver */
                    size_t idx = (size_t)x + (size_t)X * ((size_t)y + (size_t)Y * z);
                    ((uint8_t *)lb.data)[idx] = (uint8_t)lab;
                    double nz = (rng_unit(&s) - 0.5) * 2;
                    for (int ch = 0; ch < nch; ch++) {
                        double v;
                        if (ct)
                            v = !body ? -1000 + 5 * nz : lab == 2 ? 25 + 10 * nz : lab ? 70 + 10 * nz : 10 + 25 * nz;
                        else
                            v = !body ? 0 : (lab ? 600 + 120 * lab : 220) * (1 + 0.3 * ch) + 40 * nz;
                        size_t vi = idx + (size_t)ch * X * Y * Z;
                        switch (e->datatype) {
                        case SB_NIFTI_INT16: ((int16_t *)im.data)[vi] = (int16_t)lrint(v); break;
                        case SB_NIFTI_UINT16: ((uint16_t *)im.data)[vi] = (uint16_t)lrint(v + 1024); break;
                        default: ((float *)im.data)[vi] = (float)v;
                        }
                    }
                }
        }
        char ip[4096], lp[4096];
        snprintf(ip, sizeof ip, "%s/imagesTr/%s%s", folder, cid, ext);
        snprintf(lp, sizeof lp, "%s/labelsTr/%s%s", folder, cid, ext);
        rc = sb_nifti_write(&im, ip, err);
        if (rc == SB_OK)
            rc = sb_nifti_write(&lb, lp, err);
        sb_nifti_free(&im);
        sb_nifti_free(&lb);
        jl += snprintf(json + jl, sizeof json - (size_t)jl,
                       "%s\n        {\"image\": \"./imagesTr/%s%s\", \"label\": \"./labelsTr/%s%s\"}", c ? "," : "", cid,
                       ext, cid, ext);
    }
    if (rc != SB_OK)
        return rc;
    jl += snprintf(json + jl, sizeof json - (size_t)jl, "\n    ],\n    \"test\": []\n}\n");
    snprintf(p, sizeof p, "%s/dataset.json", folder);
    FILE *f = fopen(p, "w");
    if (!f)
        return sb_fail(err, SB_EIO, "%s: cannot create", p);
    fwrite(json, 1, (size_t)jl, f);
    if (fclose(f) != 0)
        return sb_fail(err, SB_EIO, "%s: write error", p);
    return SB_OK;
}

int sb_synth_write(const char *dir, const char *scale, sb_error *err)
{
    scale_cfg sc;
    if (!scale || !strcmp(scale, "tiny"))
        sc = (scale_cfg){2, 3, 64, 128, 64, 6};
    else if (!strcmp(scale, "small"))
        sc = (scale_cfg){4, 8, 192, 256, 128, 16};
    else
        return sb_fail(err, SB_EINVAL, "unknown scale '%s' (tiny or small)", scale);
    int rc = mkdirs(dir, err);
    if (rc != SB_OK)
        return rc;

    sb_manifest mb = {0}, ex = {0};
    snprintf(mb.collection, sizeof mb.collection, "medbank100k");
    snprintf(ex.collection, sizeof ex.collection, "external10");
    mb.n = 21;
    ex.n = 10;
    mb.d = calloc(21, sizeof *mb.d);
    ex.d = calloc(10, sizeof *ex.d);
    if (!mb.d || !ex.d) {
        free(mb.d);
        free(ex.d);
        return sb_fail(err, SB_ENOMEM, "out of memory");
    }
    for (int i = 0; i < 21 && rc == SB_OK; i++) {
        const mb_task *t = &mb_tasks[i];
        char folder[4096];
        snprintf(folder, sizeof folder, "%s/MedBank/%s_%s_%02d", dir, t->task, t->folder_modality, i + 1);
        rc = png_dataset(folder, t->modality, t->rgb, t->volume, &sc, 0x5a3d0000ULL + (uint64_t)i, err);
        sb_dataset_spec *s = &mb.d[i];
        sb_dataset_spec_defaults(s);
        snprintf(s->name, sizeof s->name, "%s_%s", t->task, t->modality);
        snprintf(s->task, sizeof s->task, "%s", t->task);
        snprintf(s->modality, sizeof s->modality, "%s", t->modality);
        snprintf(s->path, sizeof s->path, "MedBank/%s_%s_*", t->task, t->folder_modality);
        snprintf(s->sources, sizeof s->sources, "%s", t->sources);
        s->nonempty_only = 1;
        for (int k = 0; k < 6; k++)
            s->published_dice[k] = t->dice[k];
    }
    for (int i = 0; i < 10 && rc == SB_OK; i++) {
        const ext_ds *e = &ext_sets[i];
        char folder[4096];
        snprintf(folder, sizeof folder, "%s/external/%s", dir, e->folder);
        struct stat st;
        if (e->msd && stat(folder, &st) == 0 && !strcmp(e->folder, "Task03_Liver") &&
            !strcmp(e->name, "LiverTumor_CT_Task03"))
            ; /* Task03 serves two datasets: written once */
        else if (e->msd)
            rc = msd_dataset(folder, e, &sc, 0x6e780000ULL + (uint64_t)i, err);
        else
            rc = png_dataset(folder, e->modality, e->rgb, 0, &sc, 0x6e780000ULL + (uint64_t)i, err);
        sb_dataset_spec *s = &ex.d[i];
        sb_dataset_spec_defaults(s);
        snprintf(s->name, sizeof s->name, "%s", e->name);
        snprintf(s->task, sizeof s->task, "%s", e->task);
        snprintf(s->modality, sizeof s->modality, "%s", e->modality);
        snprintf(s->path, sizeof s->path, "external/%s", e->folder);
        snprintf(s->sources, sizeof s->sources, "%s", e->sources);
        s->layout = e->msd ? SB_LAYOUT_MSD : SB_LAYOUT_MEDBANK;
        if (e->msd) {
            s->split[0] = '\0';
            s->nlabels = e->nlabels;
            for (int k = 0; k < e->nlabels; k++)
                s->label_ids[k] = e->labels[k];
            s->channel = e->channel;
            s->intensity = e->intensity;
            s->window_level = 40;
            s->window_width = 400;
        }
        s->nonempty_only = 1;
        for (int k = 0; k < 6; k++)
            s->published_dice[k] = e->dice[k];
    }
    char p[4096];
    if (rc == SB_OK) {
        snprintf(p, sizeof p, "%s/medbank100k.yaml", dir);
        rc = sb_manifest_write(&mb, p, err);
    }
    if (rc == SB_OK) {
        snprintf(p, sizeof p, "%s/external10.yaml", dir);
        rc = sb_manifest_write(&ex, p, err);
    }
    free(mb.d);
    free(ex.d);
    return rc;
}
