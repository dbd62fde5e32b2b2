/*
 * bench/schedule_sim: replays the `sambench run` scheduler (units sorted by
 * estimated cost, longest first, handed out by an atomic counter to whichever
 * rank is free) on a simulated cluster of 1 to 4096 ranks, and prints the
 * makespan against the lower bound max(total work / ranks, longest unit).
 * Goal: within 5 % of the bound at 1024 ranks.
 *
 * The workload: a MedBank-like test split of 21 tasks (PROTOCOL.md section 5).
 * Why this distribution: the 2-D tasks (fundus, dermoscopy, X-ray,
 * colonoscopy) are one image per case, so thousands of 1-slice units; the
 * CT and MR tasks are volumes whose labelled-slice count depends on the organ
 * (a liver spans ~60-100 labelled axial slices, an adrenal gland ~10), with a
 * log-normal spread across patients (sigma 0.5, a factor ~2.7 between the
 * 16th and 84th percentiles, which is what abdominal CT/MR collections show);
 * echocardiography sequences are ~10-20 frames. Median slices per case and
 * case counts per task are assumptions stated in the table below, giving
 * about 20 k test slices in total. Cost of a unit = slices rounded up to the
 * batch (padded batches are computed too) x the per-slice time of SAMed-2 on
 * one core (~8 s: 783 GFLOP at ~100 GFLOP/s), plus a per-volume start of one
 * slice's worth for the memory-bank overlay; each fetch of the counter costs
 * 20 us (one MPI_Fetch_and_op round trip on an InfiniBand-class network).
 * Seeded: the output is the same on every run.
 */
#include "../pipeline/run.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *task, *modality;
    int cases;
    double median_slices; /* 0 = a 2-D task, one image per case */
} task_spec;

static const task_spec tasks[] = {
    {"OpticCup", "Fundus", 400, 0},        {"Melanoma", "Dermoscopy", 520, 0},
    {"Lung", "X-Ray", 1000, 0},            {"Polyp", "Colonoscopy", 300, 0},
    {"Spleen", "CT", 40, 30},              {"Esophagus", "CT", 40, 35},
    {"Liver", "CT", 60, 80},               {"Stomach", "CT", 40, 35},
    {"InferiorVenaCava", "CT", 40, 50},    {"Pancreas", "CT", 50, 25},
    {"AdrenalGland", "CT", 40, 10},        {"KidneyTumor", "CT", 40, 15},
    {"LiverTumor", "CT", 50, 12},          {"LungTumor", "CT", 30, 8},
    {"Liver", "MR", 30, 40},               {"Aorta", "MR", 30, 25},
    {"InferiorVenaCava", "MR", 30, 25},    {"Gallbladder", "MR", 30, 12},
    {"Esophagus", "MR", 30, 10},           {"Stomach", "MR", 30, 18},
    {"LVepi", "Echocardiography", 100, 15},
};

static double normal(uint64_t *st)
{
    double u1 = ((sb_splitmix64(st) >> 11) + 1.0) / 9007199254740993.0;
    double u2 = (sb_splitmix64(st) >> 11) / 9007199254740992.0;
    return sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
}

int main(void)
{
    const double per_slice = 8.0, per_volume = 8.0, fetch = 20e-6;
    const int batch = 4;
    int cap = 0;
    for (size_t t = 0; t < sizeof tasks / sizeof *tasks; t++)
        cap += tasks[t].cases;
    double *cost = malloc(sizeof(double) * (size_t)cap);
    int *order = malloc(sizeof(int) * (size_t)cap), *ident = malloc(sizeof(int) * (size_t)cap);
    int *shuf = malloc(sizeof(int) * (size_t)cap);
    if (!cost || !order || !ident || !shuf)
        return 1;
    uint64_t st = 2025;
    int n = 0;
    long slices = 0;
    for (size_t t = 0; t < sizeof tasks / sizeof *tasks; t++)
        for (int c = 0; c < tasks[t].cases; c++) {
            int s = 1;
            if (tasks[t].median_slices > 0) {
                s = (int)lround(tasks[t].median_slices * exp(0.5 * normal(&st)));
                if (s < 1)
                    s = 1;
            }
            slices += s;
            int padded = (s + batch - 1) / batch * batch;
            cost[n] = padded * per_slice + per_volume;
            ident[n] = n;
            n++;
        }
    double total = 0, longest = 0;
    for (int i = 0; i < n; i++) {
        total += cost[i];
        if (cost[i] > longest)
            longest = cost[i];
    }
    sb_sched_order(cost, n, order);
    for (int i = 0; i < n; i++)
        shuf[i] = i;
    uint64_t s2 = 7;
    for (int i = n - 1; i > 0; i--) { /* Fisher-Yates with a fixed seed */
        int j = (int)(((sb_splitmix64(&s2) >> 32) * (uint64_t)(i + 1)) >> 32);
        int tmp = shuf[i];
        shuf[i] = shuf[j];
        shuf[j] = tmp;
    }
    printf("schedule_sim: %d units (%ld slices, 21 tasks), total %.0f core-s, longest unit %.0f s\n", n, slices,
           total, longest);
    printf("cost = ceil(slices/%d)*%d x %.0f s + %.0f s per volume; counter fetch %.0f us\n\n", batch, batch, per_slice,
           per_volume, fetch * 1e6);
    printf("| ranks | lower bound (s) | LPT dynamic (s) | ratio | random-order dynamic ratio | file-order dynamic ratio |\n");
    printf("|---:|---:|---:|---:|---:|---:|\n");
    double ratio1024 = 0;
    for (int r = 1; r <= 4096; r *= 2) {
        double lb = total / r > longest ? total / r : longest;
        double m = sb_sched_makespan(cost, order, n, r, fetch);
        double mr = sb_sched_makespan(cost, shuf, n, r, fetch);
        double mi = sb_sched_makespan(cost, ident, n, r, fetch);
        printf("| %d | %.0f | %.0f | %.4f | %.4f | %.4f |\n", r, lb, m, m / lb, mr / lb, mi / lb);
        if (r == 1024)
            ratio1024 = m / lb;
    }
    printf("\nat 1024 ranks: makespan / lower bound = %.4f (goal <= 1.05): %s\n", ratio1024,
           ratio1024 <= 1.05 ? "met" : "NOT met");
    free(cost);
    free(order);
    free(ident);
    free(shuf);
    return ratio1024 <= 1.05 ? 0 : 1;
}
