/**
 * Commands (for `sh -c` in the busybox image) of the containers the real-runtime tests checkpoint.
 *
 * None of them forks while it runs. With cgroup v1 (this machine), CRIU freezes the container's
 * freezer cgroup and gives up after 10 s when a task stays in state D ("Timeout reached" then
 * "Unseizable non-zombie … state D"): a task caught mid-fork. A counter that forked `sleep 0.2`
 * five times a second hit that in 2 of ~300 checkpoints idle and 1 of 120 with both cores busy;
 * the counter below hit it in none of 300 idle and none of 200 under that load. So the loops
 * wait with the `read` builtin on a pipe that never delivers. Its writer loops because CRIU
 * interrupts sleeping syscalls: a long busybox `sleep` ends early after a checkpoint.
 */

/** Never writes, never exits, forks once a day. */
export const NEVER = 'while :; do sleep 100000; done'

/**
 * Writes 1, 2, 3… to /tmp/count every `periodSec` seconds, in place (`1<>`: no truncation, one
 * write): the number only grows, so a reader — or a checkpoint — never finds the file empty.
 */
export const counter = (periodSec = 0.2) =>
  `${NEVER} | { i=0; while :; do i=$((i+1)); echo $i 1<>/tmp/count; read -t ${periodSec} x; done; }`

/**
 * Holds `mb` MB resident: busybox awk builds one string of that size, writes "ready" to
 * /tmp/ready, then blocks reading the pipe that never delivers.
 */
export const holdMemory = (mb: number) =>
  `${NEVER} | busybox awk 'BEGIN { s = sprintf("%${mb}000000s", "x"); print "ready" > "/tmp/ready"; close("/tmp/ready"); while ((getline line) > 0) n++ }'`

/**
 * A counter (as {@link counter}) whose shell holds a deleted 2 MiB file open. CRIU refuses to dump
 * it ("Can't dump ghost file … increase limit": unlinked open files over its 1 MiB default ghost
 * limit), every time, after freezing the container — a real runtime failure on demand.
 */
export const undumpable = (periodSec = 0.2) =>
  `dd if=/dev/zero of=/tmp/ghost bs=1M count=2 2>/dev/null; exec 3</tmp/ghost; rm /tmp/ghost; ${counter(periodSec)}`
