#!/usr/bin/env bash
# make test-slurm: a real one-node Slurm cluster on this machine (Debian's slurm-wlm and munge,
# daemons started by hand on loopback with a generated slurm.conf), then
#  1. submits slurm/sambench_run.sbatch on a generated dataset, waits, and checks the results
#     are identical to a run without Slurm;
#  2. submits it again with a 1-minute limit and --signal=B:USR1@45 on a slowed-down run: the
#     time-limit signal reaches the trap, the ranks stop with status 75, the job requeues itself
#     and the requeued job finishes with --resume; the results are again identical;
#  3. chains slurm/sambench_report.sbatch with --dependency=afterok and checks its tables;
# then stops every daemon it started (by PID).
# Usage: tests/slurm/test_slurm.sh BUILD_DIR
set -uo pipefail
build=${1:-build}
root=$(pwd)
bin=$root/$build/bin/sambench
gen=$root/$build/tests/test_run
[ -x "$bin" ] && [ -x "$gen" ] || { echo "test-slurm: build $bin and $gen first"; exit 1; }

need_install=""
for c in slurmctld slurmd sbatch munged mungekey; do command -v $c >/dev/null 2>&1 || need_install=1; done
if [ -n "$need_install" ]; then
    echo "test-slurm: installing slurm-wlm and munge (apt-get)"
    sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq slurm-wlm munge >/dev/null \
        || { echo "test-slurm: apt-get failed"; exit 1; }
fi

t0=$(date +%s.%N)
T=$(mktemp -d /tmp/sambench-slurm.XXXXXX)
chmod 755 "$T"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    sleep 1
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
    if [ -n "${KEEP:-}" ]; then echo "test-slurm: kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
fail() { echo "test-slurm: FAILED: $*"; for f in "$T"/*.log "$T"/out/*.out; do [ -f "$f" ] && { echo "== $f"; tail -n 30 "$f"; }; done; exit 1; }

# ---- munge -------------------------------------------------------------------------------
mkdir -p "$T/munge" "$T/state" "$T/spool" "$T/out"
chmod 700 "$T/munge"
mungekey -c -k "$T/munge/munge.key" >/dev/null 2>&1 || fail "mungekey"
munged --force --key-file="$T/munge/munge.key" --socket="$T/munge/munge.sock" --pid-file="$T/munge/munged.pid" \
    --log-file="$T/munged.log" --seed-file="$T/munge/munged.seed" || fail "munged did not start"
for _ in $(seq 50); do [ -s "$T/munge/munged.pid" ] && break; sleep 0.1; done
pids+=("$(cat "$T/munge/munged.pid")")

# ---- slurm.conf ----------------------------------------------------------------------------
port=$((20000 + RANDOM % 20000))
conf=$T/slurm.conf
cat >"$conf" <<EOF
ClusterName=sbtest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$T/munge/munge.sock
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/slurmctld.log
SlurmdLogFile=$T/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=pmix
DependencyParameters=kill_invalid_depend
JobCompType=jobcomp/filetxt
JobCompLoc=$T/jobcomp.txt
ReturnToService=2
KillWait=5
MinJobAge=600
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 RealMemory=20000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$conf
slurmctld -f "$conf" || fail "slurmctld did not start"
for _ in $(seq 50); do [ -s "$T/slurmctld.pid" ] && break; sleep 0.1; done
pids+=("$(cat "$T/slurmctld.pid")")
slurmd -f "$conf" -N localhost || fail "slurmd did not start"
for _ in $(seq 50); do [ -s "$T/slurmd.pid" ] && break; sleep 0.1; done
pids+=("$(cat "$T/slurmd.pid")")
for _ in $(seq 100); do [ "$(sinfo -h -o %T 2>/dev/null)" = idle ] && break; sleep 0.2; done
[ "$(sinfo -h -o %T)" = idle ] || fail "node not idle: $(sinfo 2>&1)"
echo "test-slurm: one-node cluster up (port $port)"

# ---- data and the run without Slurm ---------------------------------------------------------
"$gen" --gen "$T/mb" || fail "data generation"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
"$bin" run --model box --medbank "$T/mb" --out "$T/direct" --progress 0 >"$T/direct.log" 2>&1 || fail "direct run"

state() { scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' | head -n1; }
wait_done() { # job, timeout seconds
    local s=""
    for _ in $(seq $(($2 * 5))); do
        s=$(state "$1")
        case "$s" in COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY) break ;; esac
        sleep 0.2
    done
    echo "$s"
}
same() { cmp -s "$1/per_case.csv" "$2/per_case.csv" && diff -q <(grep -v '"run"' "$1/summary.json") \
    <(grep -v '"run"' "$2/summary.json") >/dev/null; }

# ---- 1. the single job ---------------------------------------------------------------------------
cd "$T/out"
jid=$(SAMBENCH=$bin MODEL=box MEDBANK=$T/mb OUT=$T/r1 EXTRA="--progress 0" \
    sbatch --parsable --nodes=1 --ntasks=2 --ntasks-per-node=2 --cpus-per-task=1 --mem=2000 --time=5 \
    "$root/slurm/sambench_run.sbatch") || fail "sbatch"
s=$(wait_done "$jid" 120)
[ "$s" = COMPLETED ] || fail "job $jid ended $s"
[ -f "$T/r1/results.h5" ] || fail "no results.h5"
grep -q '"ranks": 2' "$T/r1/summary.json" || fail "job did not run 2 ranks"
same "$T/direct" "$T/r1" || fail "results under Slurm differ from the direct run"
echo "test-slurm: job $jid COMPLETED with 2 ranks, results identical to the direct run"

# ---- 2. time limit -> USR1 -> exit 75 -> requeue -> --resume ---------------------------------------
# The first attempt is slowed down (2 s per batch) so the time-limit signal arrives mid-run;
# the requeued attempt (SLURM_RESTART_COUNT=1) runs at full speed.
cat >"$T/slow_sambench" <<EOF
#!/bin/bash
if [ "\${SLURM_RESTART_COUNT:-0}" = 0 ]; then export SAMBENCH_BOX_DELAY_MS=2000; fi
exec "$bin" "\$@"
EOF
chmod +x "$T/slow_sambench"
jid2=$(SAMBENCH=$T/slow_sambench MODEL=box MEDBANK=$T/mb OUT=$T/r2 EXTRA="--progress 0 --batch 1" \
    sbatch --parsable --nodes=1 --ntasks=2 --ntasks-per-node=2 --cpus-per-task=1 --mem=2000 --time=1 \
    --signal=B:USR1@45 "$root/slurm/sambench_run.sbatch") || fail "sbatch (signal)"
# A requeued job is held back by Slurm's requeue delay (BeginTime about 2 minutes ahead);
# once it is pending again, let it start now so the test stays short.
for _ in $(seq 600); do
    r=$(scontrol show job "$jid2" | sed -n 's/.*Restarts=\([0-9]*\).*/\1/p' | head -n1)
    if [ "${r:-0}" -ge 1 ] && [ "$(state "$jid2")" = PENDING ]; then
        # not in the second of the requeue: slurmd still holds the old run's revoked credential
        # ("Killing non-startable batch job: Job credential revoked")
        for _ in $(seq 50); do [ "$(sinfo -h -o %T)" = idle ] && break; sleep 0.1; done
        sleep 3
        scontrol update JobId="$jid2" StartTime=now
        break
    fi
    case "$(state "$jid2")" in COMPLETED | FAILED | CANCELLED | TIMEOUT) break ;; esac
    sleep 0.2
done
s=$(wait_done "$jid2" 240)
restarts=$(scontrol show job "$jid2" | sed -n 's/.*Restarts=\([0-9]*\).*/\1/p' | head -n1)
[ "$s" = COMPLETED ] || fail "signal job $jid2 ended $s"
[ "${restarts:-0}" -ge 1 ] || fail "job $jid2 was not requeued (Restarts=$restarts)"
# Normally the ranks catch USR1 and exit 75; when the signal comes while they are still starting
# (before their handler is installed) srun reports them killed: the script requeues either way.
grep -q "requeueing job $jid2" "$T/out/sambench-$jid2.out" || fail "the job did not requeue itself"
grep -q "exited with status 75" "$T/out/sambench-$jid2.out" || echo "test-slurm: note: USR1 arrived before the ranks' handler (no status 75 this time)"
grep -q "resuming: " "$T/out/sambench-$jid2.out" || fail "requeued job did not resume"
same "$T/direct" "$T/r2" || fail "requeued + resumed results differ from the direct run"
echo "test-slurm: job $jid2 got the time-limit USR1, stopped, requeued ($restarts restart(s)), resumed; results identical"

# ---- 3. report chained with afterok -----------------------------------------------------------------
jid3=$(SAMBENCH=$bin RESULTS="$T/r1 $T/r2" REPORT_OUT=$T/report \
    sbatch --parsable --dependency=afterok:"$jid" --ntasks=1 --mem=500 "$root/slurm/sambench_report.sbatch") \
    || fail "sbatch report"
s=$(wait_done "$jid3" 60)
[ "$s" = COMPLETED ] || fail "report job $jid3 ended $s"
grep -q "| Liver | CT | Liver_CT_001 |" "$T/report/models.md" || fail "report table missing"
echo "test-slurm: report job $jid3 (afterok:$jid) COMPLETED"

t1=$(date +%s.%N)
echo "test-slurm: passed in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.0f", b-a}') s"
