// SPDX-License-Identifier: MIT
/*
 * /dev/kvm's eventfds (Documentation/virt/kvm/api.rst, KVM_IOEVENTFD and
 * KVM_IRQFD): how a VMM's device threads meet the guest without a trip
 * through the vCPU thread. An MMIO store the guest makes to a registered
 * address (and value) signals its eventfd and the guest goes on, with no
 * exit to user space; a signal on a registered irqfd makes its SPI (GSI n is
 * INTID 32 + n, as Linux's default routing has it) pending in the hyp's
 * vGIC and kicks the vCPU it goes to. All in this module: the hyp sees only
 * its usual exits and VCPU_INJECT_IRQ.
 */

#include <linux/eventfd.h>
#include <linux/file.h>
#include <linux/kvm.h>
#include <linux/list.h>
#include <linux/poll.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/workqueue.h>

#include "dev_kvm.h"
#include "hyp_calls.h"

/*
 * Most of each per VM: Linux's MMIO bus limit (NR_IOBUS_DEVS). QEMU registers
 * one ioeventfd per virtqueue, and its virtio-serial alone has 64 queues.
 */
#define MAX_IOEVENTFDS 1000
#define MAX_IRQFDS 1000

struct kvm_ioeventfd_entry {
	struct list_head link;
	u64 addr;
	/* 0: any access size. */
	u32 len;
	bool wildcard;
	u64 datamatch;
	/* KVM_IOEVENTFD_FLAG_PIO: arm64 has no port I/O; kept, never signalled. */
	bool pio;
	struct eventfd_ctx *ctx;
};

struct kvm_irqfd_entry {
	struct list_head link;
	struct kvm_vm_state *vm;
	struct eventfd_ctx *ctx;
	u32 gsi;
	wait_queue_entry_t wait;
	poll_table pt;
	struct work_struct inject;
	/* Queued when the eventfd closes (EPOLLHUP): the irqfd goes, as in Linux. */
	struct work_struct shutdown;
};

/*
 * Where closed irqfds are dropped: a queue of the module's own, so that a
 * VM's end can wait for every drop in progress (each touches the VM's list).
 */
static struct workqueue_struct *irqfd_cleanup_wq;

int kvm_eventfd_module_init(void)
{
	irqfd_cleanup_wq = alloc_workqueue("hyp-irqfd-cleanup", 0, 0);
	return irqfd_cleanup_wq ? 0 : -ENOMEM;
}

void kvm_eventfd_module_exit(void)
{
	destroy_workqueue(irqfd_cleanup_wq);
}

void kvm_eventfd_init(struct kvm_vm_state *vm)
{
	mutex_init(&vm->eventfd_lock);
	INIT_LIST_HEAD(&vm->ioeventfds);
	INIT_LIST_HEAD(&vm->irqfds);
}

static bool ioeventfd_hit(const struct kvm_ioeventfd_entry *e, u64 addr, u32 len, u64 value)
{
	if (e->pio || e->addr != addr)
		return false;
	if (e->len == 0)
		return true;
	return e->len == len && (e->wildcard || e->datamatch == value);
}

bool kvm_ioeventfd_signal(struct kvm_vm_state *vm, u64 addr, u32 len, u64 value)
{
	struct kvm_ioeventfd_entry *e;
	bool hit = false;

	mutex_lock(&vm->eventfd_lock);
	list_for_each_entry(e, &vm->ioeventfds, link) {
		if (ioeventfd_hit(e, addr, len, value)) {
			eventfd_signal(e->ctx, 1);
			hit = true;
			break;
		}
	}
	mutex_unlock(&vm->eventfd_lock);
	return hit;
}

/* Whether `a` and `b` would answer the same store (Linux's collision check). */
static bool ioeventfd_collides(const struct kvm_ioeventfd_entry *a, const struct kvm_ioeventfd_entry *b)
{
	return a->pio == b->pio && a->addr == b->addr && (!a->len || !b->len || a->len == b->len) &&
	       (a->wildcard || b->wildcard || a->datamatch == b->datamatch);
}

long kvm_ioeventfd(struct kvm_vm_state *vm, void __user *argp)
{
	const u32 known = KVM_IOEVENTFD_FLAG_DATAMATCH | KVM_IOEVENTFD_FLAG_PIO | KVM_IOEVENTFD_FLAG_DEASSIGN;
	struct kvm_ioeventfd_entry *e, *next, wanted;
	struct kvm_ioeventfd args;
	struct eventfd_ctx *ctx;
	unsigned int count = 0;
	long ret;

	if (copy_from_user(&args, argp, sizeof(args)))
		return -EFAULT;
	if (args.flags & ~known)
		return -EINVAL;
	if (args.len != 0 && args.len != 1 && args.len != 2 && args.len != 4 && args.len != 8)
		return -EINVAL;
	if (args.addr + args.len < args.addr)
		return -EINVAL;
	if (!args.len && (args.flags & KVM_IOEVENTFD_FLAG_DATAMATCH))
		return -EINVAL;
	ctx = eventfd_ctx_fdget(args.fd);
	if (IS_ERR(ctx))
		return PTR_ERR(ctx);
	wanted = (struct kvm_ioeventfd_entry){
		.addr = args.addr,
		.len = args.len,
		.wildcard = !(args.flags & KVM_IOEVENTFD_FLAG_DATAMATCH),
		.datamatch = args.datamatch,
		.pio = args.flags & KVM_IOEVENTFD_FLAG_PIO,
		.ctx = ctx,
	};
	mutex_lock(&vm->eventfd_lock);
	if (args.flags & KVM_IOEVENTFD_FLAG_DEASSIGN) {
		ret = -ENOENT;
		list_for_each_entry_safe(e, next, &vm->ioeventfds, link) {
			if (e->ctx == ctx && e->pio == wanted.pio && e->addr == wanted.addr && e->len == wanted.len &&
			    e->wildcard == wanted.wildcard && (e->wildcard || e->datamatch == wanted.datamatch)) {
				list_del(&e->link);
				eventfd_ctx_put(e->ctx);
				kfree(e);
				ret = 0;
				break;
			}
		}
		goto out;
	}
	ret = -EEXIST;
	list_for_each_entry(e, &vm->ioeventfds, link) {
		if (ioeventfd_collides(e, &wanted))
			goto out;
		count++;
	}
	ret = -ENOSPC;
	if (count >= MAX_IOEVENTFDS)
		goto out;
	ret = -ENOMEM;
	e = kmalloc(sizeof(*e), GFP_KERNEL_ACCOUNT);
	if (!e)
		goto out;
	*e = wanted;
	list_add_tail(&e->link, &vm->ioeventfds);
	ctx = NULL;
	ret = 0;
out:
	mutex_unlock(&vm->eventfd_lock);
	if (ctx)
		eventfd_ctx_put(ctx);
	return ret;
}

/* The irqfd's SPI made pending (an edge), its vCPU kicked; before the hyp's VM exists, kept for it. */
static void irqfd_inject(struct work_struct *work)
{
	struct kvm_irqfd_entry *irqfd = container_of(work, struct kvm_irqfd_entry, inject);
	struct kvm_vm_state *vm = irqfd->vm;
	u64 target = U64_MAX;

	mutex_lock(&vm->lock);
	if (vm->handle) {
		const u64 a[6] = { vm->handle, 0, 32 + irqfd->gsi, 0, 0, 0 };
		struct arm_smccc_res res = hyp_call(CALL_VCPU_INJECT_IRQ, a);

		if ((long)res.a0 == 0)
			target = res.a1;
	} else if (!vm->dead) {
		set_bit(irqfd->gsi, vm->vgic.spi_edge);
	}
	mutex_unlock(&vm->lock);
	if (target < MAX_VCPUS)
		kick_vcpus(vm, BIT_ULL(target));
}

/* The eventfd was signalled (called with its wait queue's lock held: no sleeping). */
static int irqfd_wakeup(wait_queue_entry_t *wait, unsigned int mode, int sync, void *key)
{
	struct kvm_irqfd_entry *irqfd = container_of(wait, struct kvm_irqfd_entry, wait);
	u64 count;

	if (key_to_poll(key) & EPOLLIN) {
		eventfd_ctx_do_read(irqfd->ctx, &count);
		schedule_work(&irqfd->inject);
	}
	/* The eventfd closed: the irqfd is dropped (irqfd_shutdown), as Linux's KVM does. */
	if (key_to_poll(key) & EPOLLHUP)
		queue_work(irqfd_cleanup_wq, &irqfd->shutdown);
	return 0;
}

static void irqfd_queue(struct file *file, wait_queue_head_t *wqh, poll_table *pt)
{
	struct kvm_irqfd_entry *irqfd = container_of(pt, struct kvm_irqfd_entry, pt);

	add_wait_queue(wqh, &irqfd->wait);
}

/*
 * Frees an irqfd its caller took off its VM's list (under the list's lock:
 * whoever takes it off owns it). Off the eventfd's wait queue first, so
 * that no close can queue its shutdown again; then a shutdown queued before
 * is cancelled or waited for (it finds the irqfd off the list and does
 * nothing), unless `from_shutdown`: the shutdown work itself, which must
 * not wait for itself.
 */
static void irqfd_free(struct kvm_irqfd_entry *irqfd, bool from_shutdown)
{
	u64 count;

	eventfd_ctx_remove_wait_queue(irqfd->ctx, &irqfd->wait, &count);
	if (!from_shutdown)
		cancel_work_sync(&irqfd->shutdown);
	cancel_work_sync(&irqfd->inject);
	eventfd_ctx_put(irqfd->ctx);
	kfree(irqfd);
}

/* The eventfd closed: the irqfd goes, if deassign or the VM's end did not take it first. */
static void irqfd_shutdown(struct work_struct *work)
{
	struct kvm_irqfd_entry *irqfd = container_of(work, struct kvm_irqfd_entry, shutdown);
	struct kvm_vm_state *vm = irqfd->vm;
	bool taken = false;

	mutex_lock(&vm->eventfd_lock);
	if (!list_empty(&irqfd->link)) {
		list_del_init(&irqfd->link);
		taken = true;
	}
	mutex_unlock(&vm->eventfd_lock);
	if (taken)
		irqfd_free(irqfd, true);
}

static long irqfd_deassign(struct kvm_vm_state *vm, const struct kvm_irqfd *args)
{
	struct kvm_irqfd_entry *irqfd, *next, *found = NULL;
	struct eventfd_ctx *ctx = eventfd_ctx_fdget(args->fd);

	if (IS_ERR(ctx))
		return PTR_ERR(ctx);
	mutex_lock(&vm->eventfd_lock);
	list_for_each_entry_safe(irqfd, next, &vm->irqfds, link) {
		if (irqfd->ctx == ctx && irqfd->gsi == args->gsi) {
			list_del_init(&irqfd->link);
			found = irqfd;
			break;
		}
	}
	mutex_unlock(&vm->eventfd_lock);
	eventfd_ctx_put(ctx);
	/* Outside the list's lock: the inject work may be running, and takes vm->lock. */
	if (found)
		irqfd_free(found, false);
	/* Linux: deassigning an irqfd that is not assigned is not an error. */
	return 0;
}

long kvm_irqfd(struct kvm_vm_state *vm, void __user *argp)
{
	struct kvm_irqfd_entry *irqfd, *other;
	struct kvm_irqfd args;
	unsigned int count = 0;
	__poll_t events;
	struct fd f;
	long ret;

	if (copy_from_user(&args, argp, sizeof(args)))
		return -EFAULT;
	/* No resample fd: level interrupts go through KVM_IRQ_LINE. */
	if (args.flags & ~KVM_IRQFD_FLAG_DEASSIGN)
		return -EINVAL;
	if (args.flags & KVM_IRQFD_FLAG_DEASSIGN)
		return irqfd_deassign(vm, &args);
	/* Irqfds whose eventfds have closed are gone before this one counts (MAX_IRQFDS). */
	flush_workqueue(irqfd_cleanup_wq);
	mutex_lock(&vm->lock);
	/* Linux: an irqfd needs the initialised in-kernel irqchip (CTRL_INIT or the first run; EAGAIN before). */
	ret = vm->vgic.ready ? 0 : -EAGAIN;
	if (ret == 0 && args.gsi >= (vm->vgic.nr_irqs ? vm->vgic.nr_irqs : VGIC_NR_IRQS) - 32)
		ret = -EINVAL;
	mutex_unlock(&vm->lock);
	if (ret)
		return ret;
	f = fdget(args.fd);
	if (!f.file)
		return -EBADF;
	irqfd = kzalloc(sizeof(*irqfd), GFP_KERNEL_ACCOUNT);
	if (!irqfd) {
		fdput(f);
		return -ENOMEM;
	}
	irqfd->vm = vm;
	irqfd->gsi = args.gsi;
	INIT_WORK(&irqfd->inject, irqfd_inject);
	INIT_WORK(&irqfd->shutdown, irqfd_shutdown);
	INIT_LIST_HEAD(&irqfd->link);
	irqfd->ctx = eventfd_ctx_fileget(f.file);
	if (IS_ERR(irqfd->ctx)) {
		ret = PTR_ERR(irqfd->ctx);
		kfree(irqfd);
		fdput(f);
		return ret;
	}
	mutex_lock(&vm->eventfd_lock);
	list_for_each_entry(other, &vm->irqfds, link) {
		count++;
		if (other->ctx == irqfd->ctx)
			ret = -EBUSY;
	}
	if (ret == 0 && count >= MAX_IRQFDS)
		ret = -ENOSPC;
	if (ret == 0) {
		init_waitqueue_func_entry(&irqfd->wait, irqfd_wakeup);
		init_poll_funcptr(&irqfd->pt, irqfd_queue);
		list_add_tail(&irqfd->link, &vm->irqfds);
		events = vfs_poll(f.file, &irqfd->pt);
		/* Signalled before it was assigned: inject now, as Linux does. */
		if (events & EPOLLIN)
			schedule_work(&irqfd->inject);
	}
	mutex_unlock(&vm->eventfd_lock);
	fdput(f);
	if (ret) {
		eventfd_ctx_put(irqfd->ctx);
		kfree(irqfd);
	}
	return ret;
}

void kvm_eventfd_release(struct kvm_vm_state *vm)
{
	struct kvm_ioeventfd_entry *e, *next_e;
	struct kvm_irqfd_entry *irqfd;

	/* One at a time under the lock: a close's shutdown work may take any of them meanwhile. */
	mutex_lock(&vm->eventfd_lock);
	while ((irqfd = list_first_entry_or_null(&vm->irqfds, struct kvm_irqfd_entry, link))) {
		list_del_init(&irqfd->link);
		mutex_unlock(&vm->eventfd_lock);
		irqfd_free(irqfd, false);
		mutex_lock(&vm->eventfd_lock);
	}
	mutex_unlock(&vm->eventfd_lock);
	/* Waits for the drops closes started: they took their irqfds off the list before, and take its lock. */
	flush_workqueue(irqfd_cleanup_wq);
	list_for_each_entry_safe(e, next_e, &vm->ioeventfds, link) {
		list_del(&e->link);
		eventfd_ctx_put(e->ctx);
		kfree(e);
	}
}
