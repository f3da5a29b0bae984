// SPDX-License-Identifier: GPL-2.0
/* Kernel bugs on demand, for the second-kernel stage only (guests booted in qemu, never
 * the host): the conditions some verdicts are about cannot be caused from user space on a
 * correct kernel.  Writing to /proc/investigator_faults:
 *   "atomic-sleep MS"   sleep MS milliseconds with preemption disabled (a blocking call in
 *                       atomic context: the scheduler reports "scheduling while atomic")
 *   "lock-pair A B MS"  take mutex A, sleep MS ms, take mutex B, release both: two writers
 *                       with A B and B A deadlock in the kernel (ABBA).  The waits are
 *                       killable, so SIGKILL ends the deadlock and the test cleans up.
 *   "softirq-storm CPU MS"  a tasklet on CPU that busy-waits 1 ms and schedules itself
 *                       again, for MS ms (10 min at most; "softirq-storm CPU 0" stops it):
 *                       a driver's runaway softirq work (TASKLET), which the kernel soon
 *                       hands to ksoftirqd/CPU.
 *   "mmap-hold PID MS"  hold process PID's mmap_lock for writing until "mmap-release" is
 *                       written, MS ms at the most (the writer's write returns then): whoever
 *                       reads that process's memory meanwhile (access_process_vm, as
 *                       bpf_copy_from_user_task does) waits -- as behind a task stuck in
 *                       mmap() on a hung filesystem.  Reading the file says
 *                       "mmap-held PID" while the hold is in force.
 *   "cpu-spin MS"       busy-wait MS ms (10 s at most) with preemption disabled, in the
 *                       writer's context on its CPU: a kernel path that loops without
 *                       rescheduling, which the soft-lockup watchdog and RCU's stall
 *                       detector report with that CPU and that task.
 * Built against Debian's headers by tests/vm/setup.sh; loaded by tests/vm/kmod.py. */
#include <linux/module.h>
#include <linux/mm.h>
#include <linux/mmap_lock.h>
#include <linux/pid.h>
#include <linux/sched/mm.h>
#include <linux/sched/task.h>
#include <linux/delay.h>
#include <linux/interrupt.h>
#include <linux/jiffies.h>
#include <linux/smp.h>
#include <linux/kernel.h>
#include <linux/proc_fs.h>
#include <linux/uaccess.h>
#include <linux/completion.h>

static noinline void fault_atomic_sleep(unsigned int ms)
{
	preempt_disable();
	msleep(ms);
	/* __schedule_bug() reset the preemption count it found wrong: enabling again would
	 * leave it negative and every later schedule of this task would be reported */
	if (preempt_count())
		preempt_enable();
}

static noinline void fault_cpu_spin(unsigned int ms)
{
	unsigned int i;

	preempt_disable();
	for (i = 0; i < ms; i++)
		mdelay(1);
	preempt_enable();
}

static DEFINE_MUTEX(fault_mutex_0);
static DEFINE_MUTEX(fault_mutex_1);

static struct mutex *fault_mutex(unsigned int i)
{
	return i ? &fault_mutex_1 : &fault_mutex_0;
}

static noinline int fault_lock_pair(unsigned int a, unsigned int b, unsigned int ms)
{
	int err = mutex_lock_killable(fault_mutex(a));

	if (err)
		return err;
	msleep(ms);
	err = mutex_lock_killable(fault_mutex(b));
	if (!err)
		mutex_unlock(fault_mutex(b));
	mutex_unlock(fault_mutex(a));
	return err;
}

static DECLARE_COMPLETION(mmap_release);
static pid_t mmap_held_pid;              /* whose mmap_lock is held now, 0 for none */

static noinline int fault_mmap_hold(pid_t pid, unsigned int ms)
{
	struct task_struct *t;
	struct mm_struct *mm;

	rcu_read_lock();
	t = pid_task(find_vpid(pid), PIDTYPE_PID);
	if (t)
		get_task_struct(t);
	rcu_read_unlock();
	if (!t)
		return -ESRCH;
	mm = get_task_mm(t);
	put_task_struct(t);
	if (!mm)
		return -EINVAL;
	mmap_write_lock(mm);
	reinit_completion(&mmap_release);
	WRITE_ONCE(mmap_held_pid, pid);
	/* killable, so that a test that dies leaves no hold behind */
	wait_for_completion_killable_timeout(&mmap_release, msecs_to_jiffies(ms));
	WRITE_ONCE(mmap_held_pid, 0);
	mmap_write_unlock(mm);
	mmput(mm);
	return 0;
}

static unsigned long storm_end;         /* jiffies */

static void storm_fn(struct tasklet_struct *t)
{
	mdelay(1);
	if (time_before(jiffies, READ_ONCE(storm_end)))
		tasklet_schedule(t);
}

static DECLARE_TASKLET(storm_tasklet, storm_fn);

static void storm_start(void *unused)
{
	tasklet_schedule(&storm_tasklet);       /* on this CPU */
}

static ssize_t faults_write(struct file *f, const char __user *ubuf, size_t n, loff_t *off)
{
	char buf[64] = {};
	unsigned int ms, a, b;

	if (n >= sizeof(buf) || copy_from_user(buf, ubuf, n))
		return -EINVAL;
	if (sscanf(buf, "atomic-sleep %u", &ms) == 1 && ms <= 1000) {
		fault_atomic_sleep(ms);
		return n;
	}
	if (sscanf(buf, "cpu-spin %u", &ms) == 1 && ms <= 10000) {
		fault_cpu_spin(ms);
		return n;
	}
	if (sscanf(buf, "softirq-storm %u %u", &a, &ms) == 2 && ms <= 600000 && a < nr_cpu_ids && cpu_online(a)) {
		WRITE_ONCE(storm_end, jiffies + msecs_to_jiffies(ms));
		smp_call_function_single(a, storm_start, NULL, 1);
		return n;
	}
	if (!strncmp(buf, "mmap-release", 12)) {
		complete_all(&mmap_release);
		return n;
	}
	if (sscanf(buf, "mmap-hold %u %u", &a, &ms) == 2 && ms <= 120000) {
		int err = fault_mmap_hold(a, ms);

		return err ? err : n;
	}
	if (sscanf(buf, "lock-pair %u %u %u", &a, &b, &ms) == 3 && a <= 1 && b <= 1 && a != b && ms <= 10000) {
		int err = fault_lock_pair(a, b, ms);

		return err ? err : n;
	}
	return -EINVAL;
}

static ssize_t faults_read(struct file *f, char __user *ubuf, size_t n, loff_t *off)
{
	char buf[32] = {};
	pid_t pid = READ_ONCE(mmap_held_pid);
	int len = pid ? scnprintf(buf, sizeof(buf), "mmap-held %d\n", pid) : 0;

	return simple_read_from_buffer(ubuf, n, off, buf, len);
}

static const struct proc_ops faults_ops = { .proc_read = faults_read, .proc_write = faults_write };

static int __init faults_init(void)
{
	return proc_create("investigator_faults", 0600, NULL, &faults_ops) ? 0 : -ENOMEM;
}

static void __exit faults_exit(void)
{
	remove_proc_entry("investigator_faults", NULL);
	complete_all(&mmap_release);
	WRITE_ONCE(storm_end, jiffies);
	tasklet_kill(&storm_tasklet);
}

module_init(faults_init);
module_exit(faults_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("investigator second-kernel stage: kernel bugs on demand");
