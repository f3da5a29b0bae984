// SPDX-License-Identifier: GPL-2.0
/* Kernel bugs on demand, for the second-kernel stage only (guests booted in qemu, never
 * the host): the conditions some verdicts are about cannot be caused from user space on a
 * correct kernel.  Writing to /proc/investigator_faults:
 *   "atomic-sleep MS"   sleep MS milliseconds with preemption disabled (a blocking call in
 *                       atomic context: the scheduler reports "scheduling while atomic")
 * Built against Debian's headers by tests/vm/setup.sh; loaded by tests/vm/kmod.py. */
#include <linux/module.h>
#include <linux/delay.h>
#include <linux/kernel.h>
#include <linux/proc_fs.h>
#include <linux/uaccess.h>

static noinline void fault_atomic_sleep(unsigned int ms)
{
	preempt_disable();
	msleep(ms);
	/* __schedule_bug() reset the preemption count it found wrong: enabling again would
	 * leave it negative and every later schedule of this task would be reported */
	if (preempt_count())
		preempt_enable();
}

static ssize_t faults_write(struct file *f, const char __user *ubuf, size_t n, loff_t *off)
{
	char buf[64] = {};
	unsigned int ms;

	if (n >= sizeof(buf) || copy_from_user(buf, ubuf, n))
		return -EINVAL;
	if (sscanf(buf, "atomic-sleep %u", &ms) == 1 && ms <= 1000) {
		fault_atomic_sleep(ms);
		return n;
	}
	return -EINVAL;
}

static const struct proc_ops faults_ops = { .proc_write = faults_write };

static int __init faults_init(void)
{
	return proc_create("investigator_faults", 0200, NULL, &faults_ops) ? 0 : -ENOMEM;
}

static void __exit faults_exit(void)
{
	remove_proc_entry("investigator_faults", NULL);
}

module_init(faults_init);
module_exit(faults_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("investigator second-kernel stage: kernel bugs on demand");
