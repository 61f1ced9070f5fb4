// SPDX-License-Identifier: MIT
/*
 * /dev/kvm: the core of Linux's KVM user-space API for arm64
 * (Documentation/virt/kvm/api.rst) on the hyp's host calls, so that a KVM
 * VMM drives the hyp. The host's own KVM is absent (the kernel runs at EL1,
 * under the hyp), so the name is free. Glue only, as /dev/hyp: the VM types,
 * what a protected VM refuses and every guest exit are the hyp's; this file
 * translates (docs/abi.md, "The Linux host's /dev/kvm", has the subset and
 * the errno of each refusal).
 *
 * The hyp makes a VM with its vCPU count fixed, KVM one vCPU at a time, so
 * the hyp's VM is made at the first KVM_RUN of any of its vCPUs (as Linux's
 * pKVM does): until then the memory slots are pinned and recorded, and the
 * vCPUs' core registers are kept here; then the VM is created with the
 * vCPUs made so far, the slots are mapped (lent to a non-protected VM,
 * donated to a protected one) and the registers set (for a protected VM only
 * vCPU 0's entry and x0, the hyp's VCPU_INIT; it refuses the rest).
 */

#include <linux/anon_inodes.h>
#include <linux/capability.h>
#include <linux/file.h>
#include <linux/hugetlb.h>
#include <linux/kref.h>
#include <linux/kvm.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/wait.h>

#include "dev_kvm.h"
#include "hyp_calls.h"
#include "protected_memory.h"

/* The physical count, which is the host's virtual count (the hyp gives the host no offset). */
static u64 physical_count(void)
{
	isb();
	return read_sysreg(cntvct_el0);
}

/* The VM's IPA limit: the hyp gives VMs what its PARange mapping gives the host. */
static unsigned int hyp_ipa_bits(void)
{
	static const unsigned int bits[] = { 32, 36, 39, 39, 44, 48, 48 };
	u64 pa_range = read_sysreg(id_aa64mmfr0_el1) & 0xf;

	return pa_range < ARRAY_SIZE(bits) ? bits[pa_range] : 48;
}

/* The errno of a hyp error (docs/abi.md, "The Linux host's /dev/kvm"). */
long hyp_errno(long status)
{
	switch (status) {
	case 0:
		return 0;
	case HYP_INVALID_ARGUMENT:
	case HYP_NOT_ALIGNED:
	case HYP_NO_SUCH_VCPU:
		return -EINVAL;
	case HYP_OUT_OF_RANGE:
		return -EFAULT;
	case HYP_NOT_OWNED:
	case HYP_PERMISSION_DENIED:
		return -EPERM;
	case HYP_BUSY:
		return -EBUSY;
	case HYP_NO_MEMORY:
		return -ENOMEM;
	case HYP_NOT_SUPPORTED:
		return -EOPNOTSUPP;
	default:
		/* NoSuchVm: the VM crashed or is gone. */
		return -EIO;
	}
}

/* Pages of a slot from `first` on that are physically consecutive: at most one VM_MAP's worth. */
static unsigned long slot_run(const struct kvm_slot *slot, unsigned long first)
{
	unsigned long run = 1;

	while (first + run < slot->npages && run < HYP_MAP_MAX_PAGES &&
	       page_to_pfn(slot->pages[first + run]) == page_to_pfn(slot->pages[first]) + run)
		run++;
	return run;
}

/*
 * Whether a protected VM's page is the host's after a VM_RECLAIM of it that
 * answered `status`: taken back, the VM gone with its pages, or never mapped
 * (InvalidArgument: the VM's creation stopped short, or the guest gave the
 * page back itself).
 */
static bool reclaimed_page_back(long status)
{
	return status == 0 || status == HYP_NO_SUCH_VM || status == HYP_INVALID_ARGUMENT;
}

static void signal_event(struct kvm_vm_state *vm);

/*
 * One reference drop per folio: a huge page at once. Dirty: the guest wrote
 * them through its stage-2, which the host's page tables never saw (an
 * anonymous page with a copy in swap would otherwise be dropped as clean).
 */
static void unpin_slot_pages(struct kvm_slot *slot, unsigned long first, unsigned long pages)
{
	unpin_user_pages_dirty_lock(slot->pages + first, pages, true);
}

/*
 * Takes back a protected VM's pages first..first + pages of a slot, one run
 * of physically consecutive pages (what one VM_MAP gave): one VM_RECLAIM
 * (each page scrubbed), then unpinned. A run the hyp refuses as a range
 * (InvalidArgument, NotOwned: pages never mapped, or given back by the
 * guest) is taken back page by page; a page the hyp keeps stays pinned.
 */
static unsigned long reclaim_slot_run(struct kvm_vm_state *vm, struct kvm_slot *slot, unsigned long first,
				      unsigned long pages)
{
	u64 ipa = slot->gpa + first * PAGE_SIZE;
	long status = hyp_call4(CALL_VM_RECLAIM, vm->handle, ipa, pages, 0);
	unsigned long i, kept = 0;

	if (status == 0 || status == HYP_NO_SUCH_VM) {
		unpin_slot_pages(slot, first, pages);
		return 0;
	}
	if (pages == 1 || (status != HYP_INVALID_ARGUMENT && status != HYP_NOT_OWNED)) {
		if (reclaimed_page_back(status)) {
			unpin_slot_pages(slot, first, pages);
			return 0;
		}
		pr_warn("kvm: %lu pages at IPA %#llx not returned (%ld); kept pinned\n", pages, ipa, status);
		return pages;
	}
	for (i = first; i < first + pages; i++) {
		status = hyp_call4(CALL_VM_RECLAIM, vm->handle, slot->gpa + i * PAGE_SIZE, 1, 0);
		if (reclaimed_page_back(status)) {
			unpin_slot_pages(slot, i, 1);
		} else {
			pr_warn("kvm: page at IPA %#llx not returned (%ld); kept pinned\n", slot->gpa + i * PAGE_SIZE,
				status);
			kept++;
		}
	}
	return kept;
}

/*
 * Unpins a slot's pages; for a protected VM, reclaims them first (zeroed),
 * a run of physically consecutive pages per call (reclaim_slot_run).
 * `lent_back`: a non-protected VM's pages are back (no VM, or torn down);
 * if not, they stay pinned: the kernel must never reuse a page a guest uses.
 */
static void release_slot(struct kvm_vm_state *vm, struct kvm_slot *slot, bool lent_back)
{
	unsigned long i = 0, kept = 0;

	while (i < slot->npages) {
		unsigned long run = slot_run(slot, i);

		/*
		 * A run's VM_RECLAIM scrubs up to 2 MiB: hundreds of MiB take
		 * long, and with no reschedule the CPU stalls RCU (seen with
		 * four guests at once).
		 */
		cond_resched();
		if (vm->handle && vm->is_protected)
			kept += reclaim_slot_run(vm, slot, i, run);
		else if (!vm->handle || lent_back)
			unpin_slot_pages(slot, i, run);
		else
			kept += run;
		i += run;
	}
	vm->pinned -= slot->npages;
	if (vm->handle && vm->is_protected)
		protected_pages_kept_for_good(kept);
	/* Pages the hyp kept stay pinned for good, and stay counted as locked. */
	account_locked_vm(vm->mm, slot->npages - kept, false);
	kvfree(slot->pages);
	memset(slot, 0, sizeof(*slot));
}

/* Gives a slot's pages to the hyp's VM, one VM_MAP per physically consecutive run. */
static long map_slot(struct kvm_vm_state *vm, struct kvm_slot *slot)
{
	unsigned long i = 0;

	while (i < slot->npages) {
		unsigned long run = slot_run(slot, i);
		long status;

		status = hyp_call4(CALL_VM_MAP, vm->handle, page_to_phys(slot->pages[i]),
				   slot->gpa + i * PAGE_SIZE, run);
		if (status != 0)
			return hyp_errno(status);
		i += run;
	}
	return 0;
}

/* Ends the hyp's VM and takes every page back. Under vm->lock, or at the last reference. */
static void destroy_hyp_vm(struct kvm_vm_state *vm)
{
	long status = 0;
	unsigned int i;

	if (vm->handle)
		status = hyp_call4(CALL_VM_TEARDOWN, vm->handle, 0, 0, 0);
	if (status != 0 && status != HYP_NO_SUCH_VM)
		pr_warn("kvm: VM teardown refused (%ld); its lent pages stay pinned\n", status);
	for (i = 0; i < MAX_SLOTS; i++)
		if (vm->slots[i].used)
			release_slot(vm, &vm->slots[i], status == 0 || status == HYP_NO_SUCH_VM);
	/* A protected VM the hyp kept (its teardown refused) stays counted: hibernation stays refused. */
	if (vm->handle && vm->is_protected && (status == 0 || status == HYP_NO_SUCH_VM))
		protected_vm_gone();
	vm->handle = 0;
}

void vm_free(struct kref *ref)
{
	struct kvm_vm_state *vm = container_of(ref, struct kvm_vm_state, ref);

	unsigned int i;

	kvm_eventfd_release(vm);
	destroy_hyp_vm(vm);
	for (i = 0; i < vm->vcpu_count; i++) {
		/* A kvm_run page still mapped somewhere keeps its own reference. */
		free_page((unsigned long)vm->vcpus[i]->run);
		kfree(vm->vcpus[i]);
	}
	memcache_client_end();
	mmdrop(vm->mm);
	kfree(vm);
}

/*
 * Makes the hyp's VM: the vCPUs made so far, every slot mapped, the
 * initialised vCPUs started with their registers. Under vm->lock.
 */
static long create_hyp_vm(struct kvm_vm_state *vm)
{
	const u64 create[6] = { vm->is_protected ? 1 : 0, vm->vcpu_count, 0, 0, 0, 0 };
	struct arm_smccc_res res;
	const char *step = "VM_SET_GIC";
	unsigned int i, reg;
	long ret = kvm_vgic_check_ready(vm);

	/* An incomplete vGIC: nothing made, user space may complete it and run again. */
	if (ret)
		return ret;
	if (vm->is_protected && !protected_vm_may_start())
		return -EINTR;
	res = hyp_call(CALL_VM_CREATE, create);
	if ((long)res.a0 != 0) {
		if (vm->is_protected)
			protected_vm_gone();
		return hyp_errno((long)res.a0);
	}
	vm->handle = res.a1;
	ret = kvm_vgic_apply(vm);
	for (i = 0; i < MAX_SLOTS && ret == 0; i++) {
		step = "VM_MAP";
		if (vm->slots[i].used)
			ret = map_slot(vm, &vm->slots[i]);
	}
	for (i = 0; i < vm->vcpu_count && ret == 0; i++) {
		struct kvm_vcpu_state *vcpu = vm->vcpus[i];

		/* A protected VM's other vCPUs start only through its guest's CPU_ON. */
		if (!vcpu->initialised || vcpu->power_off || (vm->is_protected && i != 0))
			continue;
		step = "VCPU_INIT";
		ret = hyp_errno(hyp_call4(CALL_VCPU_INIT, vm->handle, i, vcpu->regs[HYP_REG_PC], vcpu->regs[0]));
		/* VCPU_INIT reset the rest: only what differs goes (the virtual count, the VM's, below). */
		step = "VCPU_SET_REG";
		for (reg = 1; reg < HYP_REGS && ret == 0 && !vm->is_protected; reg++)
			if (reg != HYP_REG_PC && reg != HYP_REG_TIMER_COUNT &&
			    vcpu->regs[reg] != (reg == HYP_REG_PSTATE ? RESET_PSTATE : 0))
				ret = hyp_errno(hyp_call4(CALL_VCPU_SET_REG, vm->handle, i, reg, vcpu->regs[reg]));
	}
	/*
	 * The count the guest's virtual counter showed so far goes on from here
	 * (KVM_REG_ARM_TIMER_CNT): the host may set a protected VM's too, before
	 * it first runs.
	 */
	if (ret == 0) {
		step = "VCPU_SET_REG of the virtual count";
		ret = hyp_errno(hyp_call4(CALL_VCPU_SET_REG, vm->handle, 0, HYP_REG_TIMER_COUNT,
					  physical_count() - vm->count_offset));
	}
	if (ret != 0) {
		pr_warn_ratelimited("kvm: the hyp refused the VM at its first run (%s: %ld); the VM is dead\n", step,
				    ret);
		destroy_hyp_vm(vm);
		WRITE_ONCE(vm->dead, true);
		/* Siblings waiting for the VM (powered off at init) see it dead. */
		signal_event(vm);
	}
	return ret;
}

/* PSTATE's condition flags N, Z, C, V. */
#define PSTATE_NZCV (0xfULL << 28)

/* What a register id of KVM_GET_REG_LIST is here. */
enum reg_kind {
	/* One hyp register (`hyp`). */
	REG_HYP,
	/* A SIMD register: the hyp's `hyp` (bits 63:0) and `hyp` + 1 (bits 127:64). */
	REG_VREG,
	/* kvm_regs.spsr[1 + `hyp`], kept in the driver (spsr_aarch32). */
	REG_SPSR32,
	/* A value the hyp fixes for every vCPU (fixed_reg). */
	REG_FIXED,
};

struct reg_ref {
	u64 id;
	enum reg_kind kind;
	unsigned int hyp;
};

#define CORE_REG(size, field) \
	(KVM_REG_ARM64 | (size) | KVM_REG_ARM_CORE | (offsetof(struct kvm_regs, field) / sizeof(u32)))
/* Registers the hyp fixes for every vCPU: MPIDR_EL1 (vCPU n's is 0x8000_0000 | n) and the PSCI version (1.1). */
#define REG_MPIDR_EL1 ARM64_SYS_REG(3, 0, 0, 0, 5)
/*
 * KVM_GET_REG_LIST: the core registers as Linux lists them (x0..x30, SP_EL0,
 * PC, PSTATE, SP_EL1, ELR_EL1, the five SPSRs, V0..V31, FPSR, FPCR), the
 * PSCI version, the virtual timer's three and MPIDR_EL1.
 */
#define REG_LIST_LENGTH (31 + 5 + 5 + 32 + 2 + 1 + 3 + 1)

/* After x30, in struct kvm_regs's order, as Linux lists them. */
static const struct reg_ref after_x30[] = {
	{ CORE_REG(KVM_REG_SIZE_U64, regs.sp), REG_HYP, HYP_REG_SP_EL0 },
	{ CORE_REG(KVM_REG_SIZE_U64, regs.pc), REG_HYP, HYP_REG_PC },
	{ CORE_REG(KVM_REG_SIZE_U64, regs.pstate), REG_HYP, HYP_REG_PSTATE },
	{ CORE_REG(KVM_REG_SIZE_U64, sp_el1), REG_HYP, HYP_REG_SP_EL1 },
	{ CORE_REG(KVM_REG_SIZE_U64, elr_el1), REG_HYP, HYP_REG_ELR_EL1 },
	{ CORE_REG(KVM_REG_SIZE_U64, spsr[KVM_SPSR_EL1]), REG_HYP, HYP_REG_SPSR_EL1 },
	{ CORE_REG(KVM_REG_SIZE_U64, spsr[KVM_SPSR_ABT]), REG_SPSR32, 0 },
	{ CORE_REG(KVM_REG_SIZE_U64, spsr[KVM_SPSR_UND]), REG_SPSR32, 1 },
	{ CORE_REG(KVM_REG_SIZE_U64, spsr[KVM_SPSR_IRQ]), REG_SPSR32, 2 },
	{ CORE_REG(KVM_REG_SIZE_U64, spsr[KVM_SPSR_FIQ]), REG_SPSR32, 3 },
};
/* After V31. */
static const struct reg_ref after_v31[] = {
	{ CORE_REG(KVM_REG_SIZE_U32, fp_regs.fpsr), REG_HYP, HYP_REG_FPSR },
	{ CORE_REG(KVM_REG_SIZE_U32, fp_regs.fpcr), REG_HYP, HYP_REG_FPCR },
	{ KVM_REG_ARM_PSCI_VERSION, REG_FIXED, 0 },
	{ KVM_REG_ARM_TIMER_CTL, REG_HYP, HYP_REG_TIMER_CTL },
	{ KVM_REG_ARM_TIMER_CNT, REG_HYP, HYP_REG_TIMER_COUNT },
	{ KVM_REG_ARM_TIMER_CVAL, REG_HYP, HYP_REG_TIMER_CVAL },
	{ REG_MPIDR_EL1, REG_FIXED, 0 },
};

/* The i-th register of the list; false past its end. */
static bool reg_at(unsigned int i, struct reg_ref *ref)
{
	if (i < 31) {
		*ref = (struct reg_ref){ CORE_REG(KVM_REG_SIZE_U64, regs.regs[i]), REG_HYP, i };
		return true;
	}
	i -= 31;
	if (i < ARRAY_SIZE(after_x30)) {
		*ref = after_x30[i];
		return true;
	}
	i -= ARRAY_SIZE(after_x30);
	if (i < 32) {
		*ref = (struct reg_ref){ CORE_REG(KVM_REG_SIZE_U128, fp_regs.vregs[i]), REG_VREG, HYP_REG_V0 + 2 * i };
		return true;
	}
	i -= 32;
	if (i < ARRAY_SIZE(after_v31)) {
		*ref = after_v31[i];
		return true;
	}
	return false;
}

static_assert(REG_LIST_LENGTH == 31 + ARRAY_SIZE(after_x30) + 32 + ARRAY_SIZE(after_v31),
	      "the register list's length");

/* What `id` names, or a negative errno as Linux gives for it. */
static long decode_reg(u64 id, struct reg_ref *ref)
{
	unsigned int i;

	if ((id & KVM_REG_ARCH_MASK) != KVM_REG_ARM64)
		return -EINVAL;
	for (i = 0; reg_at(i, ref); i++)
		if (ref->id == id)
			return 0;
	/* A core register of another size, as Linux checks it. */
	if ((id & KVM_REG_ARM_COPROC_MASK) == KVM_REG_ARM_CORE) {
		for (i = 0; reg_at(i, ref); i++)
			if ((ref->id & ~KVM_REG_SIZE_MASK) == (id & ~KVM_REG_SIZE_MASK))
				return -EINVAL;
	}
	return -ENOENT;
}

/* A fixed register's value (`ref->kind` is REG_FIXED). */
static u64 fixed_reg(const struct kvm_vcpu_state *vcpu, const struct reg_ref *ref)
{
	return ref->id == REG_MPIDR_EL1 ? BIT(31) | vcpu->index : 0x10001;
}

/*
 * One hyp register of the vCPU: from the hyp once its VM exists, else as the
 * driver keeps it. Under vm->lock.
 */
static long get_hyp_reg(struct kvm_vcpu_state *vcpu, unsigned int reg, u64 *value)
{
	struct kvm_vm_state *vm = vcpu->vm;

	if (vm->handle) {
		const u64 a[6] = { vm->handle, vcpu->index, reg, 0, 0, 0 };
		struct arm_smccc_res res = hyp_call(CALL_VCPU_GET_REG, a);

		*value = res.a1;
		return hyp_errno((long)res.a0);
	} else if (reg == HYP_REG_TIMER_COUNT) {
		*value = physical_count() - vm->count_offset;
	} else {
		*value = vcpu->regs[reg];
	}
	return 0;
}

static long set_hyp_reg(struct kvm_vcpu_state *vcpu, unsigned int reg, u64 value)
{
	struct kvm_vm_state *vm = vcpu->vm;

	if (vm->handle && vm->is_protected && vcpu->index != 0 && reg != HYP_REG_TIMER_COUNT) {
		/*
		 * A protected VM's other vCPUs start only by their guest's CPU_ON,
		 * which resets them: a VMM writing the reset value it reads back
		 * (kvmtool does, in each vCPU's thread, while vCPU 0 may already run)
		 * changes nothing; any other value is refused, as before the first run.
		 */
		return value == vcpu->regs[reg] ? 0 : -EPERM;
	}
	if (vm->handle)
		return hyp_errno(hyp_call4(CALL_VCPU_SET_REG, vm->handle, vcpu->index, reg, value));
	if (reg == HYP_REG_TIMER_COUNT) {
		/* The VM's, in either type (the hyp takes it at the first run). */
		vm->count_offset = physical_count() - value;
		return 0;
	}
	/*
	 * The hyp takes only vCPU 0's entry and x0 from the host (VCPU_INIT).
	 * PSTATE's condition flags are no state a guest starts from: a VMM may
	 * write its own (QEMU's reset PSTATE has Z set, and a refusal would keep
	 * QEMU from writing PC after it); the hyp's VCPU_INIT clears them.
	 */
	if (vm->is_protected && value != vcpu->regs[reg] && !(vcpu->index == 0 && (reg == 0 || reg == HYP_REG_PC)) &&
	    !(reg == HYP_REG_PSTATE && (value & ~PSTATE_NZCV) == (vcpu->regs[reg] & ~PSTATE_NZCV)))
		return -EPERM;
	vcpu->regs[reg] = value;
	return 0;
}

static long vcpu_one_reg(struct kvm_vcpu_state *vcpu, unsigned int ioctl, void __user *argp)
{
	struct kvm_vm_state *vm = vcpu->vm;
	struct kvm_one_reg one;
	struct reg_ref ref;
	void __user *user_value;
	u64 value[2] = { 0, 0 };
	size_t size;
	long ret;

	if (!vcpu->initialised)
		return -ENOEXEC;
	if (copy_from_user(&one, argp, sizeof(one)))
		return -EFAULT;
	ret = decode_reg(one.id, &ref);
	if (ret)
		return ret;
	user_value = u64_to_user_ptr(one.addr);
	size = KVM_REG_SIZE(one.id);
	if (ioctl == KVM_SET_ONE_REG && copy_from_user(value, user_value, size))
		return -EFAULT;
	mutex_lock(&vm->lock);
	switch (ref.kind) {
	case REG_FIXED:
		/* Readable in both VM types (not the guest's state); a write may only keep the value. */
		if (ioctl == KVM_GET_ONE_REG)
			value[0] = fixed_reg(vcpu, &ref);
		else
			ret = value[0] == fixed_reg(vcpu, &ref) ? 0 : -EINVAL;
		break;
	case REG_SPSR32:
		/* AArch32 state the hyp's vCPUs never use: user space's to keep, in both VM types. */
		if (ioctl == KVM_GET_ONE_REG)
			value[0] = vcpu->spsr_aarch32[ref.hyp];
		else
			vcpu->spsr_aarch32[ref.hyp] = value[0];
		break;
	case REG_VREG:
		if (ioctl == KVM_GET_ONE_REG) {
			ret = get_hyp_reg(vcpu, ref.hyp, &value[0]);
			if (ret == 0)
				ret = get_hyp_reg(vcpu, ref.hyp + 1, &value[1]);
		} else if (vm->is_protected && !vm->handle && (value[0] != vcpu->regs[ref.hyp] ||
								value[1] != vcpu->regs[ref.hyp + 1])) {
			/* Both halves or neither. */
			ret = -EPERM;
		} else {
			ret = set_hyp_reg(vcpu, ref.hyp, value[0]);
			if (ret == 0)
				ret = set_hyp_reg(vcpu, ref.hyp + 1, value[1]);
		}
		break;
	case REG_HYP:
		if (ioctl == KVM_GET_ONE_REG)
			ret = get_hyp_reg(vcpu, ref.hyp, &value[0]);
		else
			ret = set_hyp_reg(vcpu, ref.hyp, size == sizeof(u32) ? (u32)value[0] : value[0]);
		break;
	}
	mutex_unlock(&vm->lock);
	if (ret == 0 && ioctl == KVM_GET_ONE_REG && copy_to_user(user_value, value, size))
		ret = -EFAULT;
	return ret;
}

static long vcpu_reg_list(void __user *argp)
{
	struct kvm_reg_list __user *user_list = argp;
	struct kvm_reg_list list;
	struct reg_ref ref;
	unsigned int i;

	if (copy_from_user(&list, user_list, sizeof(list)))
		return -EFAULT;
	if (put_user((u64)REG_LIST_LENGTH, &user_list->n))
		return -EFAULT;
	if (list.n < REG_LIST_LENGTH)
		return -E2BIG;
	for (i = 0; reg_at(i, &ref); i++)
		if (put_user(ref.id, &user_list->reg[i]))
			return -EFAULT;
	return 0;
}

static long vcpu_init(struct kvm_vcpu_state *vcpu, void __user *argp)
{
	struct kvm_vm_state *vm = vcpu->vm;
	struct kvm_vcpu_init init;
	long ret = 0;
	unsigned int i;

	if (copy_from_user(&init, argp, sizeof(init)))
		return -EFAULT;
	if (init.target != KVM_ARM_TARGET_GENERIC_V8)
		return -EINVAL;
	if (init.features[0] & ~SUPPORTED_FEATURES)
		return -EINVAL;
	for (i = 1; i < ARRAY_SIZE(init.features); i++)
		if (init.features[i])
			return -EINVAL;
	mutex_lock(&vm->lock);
	if (vm->handle) {
		/* A reset of a vCPU of the running VM: the hyp's VCPU_INIT decides. */
		if (init.features[0] & BIT(KVM_ARM_VCPU_POWER_OFF))
			ret = -EBUSY;
		else
			ret = hyp_errno(hyp_call4(CALL_VCPU_INIT, vm->handle, vcpu->index, 0, 0));
	} else {
		memset(vcpu->regs, 0, sizeof(vcpu->regs));
		memset(vcpu->spsr_aarch32, 0, sizeof(vcpu->spsr_aarch32));
		vcpu->regs[HYP_REG_PSTATE] = RESET_PSTATE;
		WRITE_ONCE(vcpu->power_off, init.features[0] & BIT(KVM_ARM_VCPU_POWER_OFF));
	}
	if (ret == 0)
		vcpu->initialised = true;
	mutex_unlock(&vm->lock);
	return ret;
}

/* Waits for a CPU_ON or a wake (or until `timeout`); false when a signal came. */
static bool wait_for_event(struct kvm_vm_state *vm, int seen, long timeout)
{
	return wait_event_interruptible_timeout(vm->events_wait, atomic_read(&vm->events) != seen, timeout) >= 0;
}

static void signal_event(struct kvm_vm_state *vm)
{
	atomic_inc(&vm->events);
	wake_up_interruptible_all(&vm->events_wait);
}

/* Kicks the vCPUs named in `targets` off their CPUs, so that they see their interrupts. */
void kick_vcpus(struct kvm_vm_state *vm, u64 targets)
{
	unsigned int i;

	mutex_lock(&vm->lock);
	/* A task may leave KVM_RUN and exit meanwhile: task structs are freed after RCU. */
	rcu_read_lock();
	for (i = 0; i < vm->vcpu_count; i++) {
		struct task_struct *task = READ_ONCE(vm->vcpus[i]->running);

		if ((targets & BIT_ULL(i)) && task)
			kick_process(task);
	}
	rcu_read_unlock();
	mutex_unlock(&vm->lock);
	signal_event(vm);
}

/* Runs the guest until an exit user space handles; fills vcpu->run. */
static long vcpu_run(struct kvm_vcpu_state *vcpu)
{
	struct kvm_vm_state *vm = vcpu->vm;
	struct kvm_run *run = vcpu->run;
	u64 read_value = 0;
	long ret = 0;

	if (!vcpu->initialised)
		return -ENOEXEC;
	mutex_lock(&vm->lock);
	if (vm->dead) {
		ret = -EIO;
	} else if (!vm->handle && !vcpu->power_off) {
		ret = create_hyp_vm(vm);
		if (ret == 0)
			signal_event(vm);
	}
	mutex_unlock(&vm->lock);
	if (ret == -EINTR)
		run->exit_reason = KVM_EXIT_INTR;
	if (ret)
		return ret;
	/*
	 * A vCPU powered off at KVM_ARM_VCPU_INIT does not make the VM (its
	 * siblings may not have their registers yet, and a protected VM takes
	 * vCPU 0's only at its creation): it waits for the VM, then for its
	 * CPU_ON, as KVM's would wait for its CPU_ON.
	 */
	while (!READ_ONCE(vm->handle)) {
		int seen = atomic_read(&vm->events);

		if (READ_ONCE(vm->dead))
			return -EIO;
		if (READ_ONCE(run->immediate_exit) || signal_pending(current)) {
			run->exit_reason = KVM_EXIT_INTR;
			return -EINTR;
		}
		if (!READ_ONCE(vm->handle))
			wait_for_event(vm, seen, MAX_SCHEDULE_TIMEOUT);
	}
	if (vcpu->mmio_read_pending)
		memcpy(&read_value, run->mmio.data, min_t(unsigned int, vcpu->mmio_read_len, sizeof(read_value)));
	if (READ_ONCE(run->immediate_exit))
		return -EINTR;
	for (;;) {
		int seen = atomic_read(&vm->events);
		const u64 a[6] = { vm->handle, vcpu->index, read_value, 0, 0, 0 };
		struct arm_smccc_res res;
		long status;
		u64 reason;

		if (signal_pending(current)) {
			run->exit_reason = KVM_EXIT_INTR;
			return -EINTR;
		}
		WRITE_ONCE(vcpu->running, current);
		res = hyp_call(CALL_VCPU_RUN, a);
		WRITE_ONCE(vcpu->running, NULL);
		status = (long)res.a0;
		if (status == 0)
			WRITE_ONCE(vcpu->power_off, false);
		if (status == HYP_VCPU_OFF) {
			/* Powered off: wait for a sibling's CPU_ON (KVM's KVM_RUN blocks too). */
			WRITE_ONCE(vcpu->power_off, true);
			wait_for_event(vm, seen, MAX_SCHEDULE_TIMEOUT);
			continue;
		}
		if (status != 0)
			return hyp_errno(status);
		vcpu->mmio_read_pending = false;
		read_value = 0;
		reason = res.a1 & 0xff;
		switch (reason) {
		case EXIT_MMIO: {
			unsigned int len = (res.a1 >> 8) & 0xff;
			bool is_write = res.a1 & BIT(16);

			/* A store an ioeventfd takes: signalled, and the guest goes on. */
			if (is_write && kvm_ioeventfd_signal(vm, res.a2, len, res.a3)) {
				/* A guest storing there in a loop keeps this thread in the kernel: yield. */
				cond_resched();
				break;
			}
			run->exit_reason = KVM_EXIT_MMIO;
			run->mmio.phys_addr = res.a2;
			run->mmio.len = len;
			run->mmio.is_write = is_write;
			memset(run->mmio.data, 0, sizeof(run->mmio.data));
			if (is_write)
				memcpy(run->mmio.data, &res.a3, min_t(unsigned int, len, sizeof(res.a3)));
			vcpu->mmio_read_pending = !is_write;
			vcpu->mmio_read_len = len;
			return 0;
		}
		case EXIT_HYPERCALL:
			run->exit_reason = KVM_EXIT_HYPERCALL;
			memset(&run->hypercall, 0, sizeof(run->hypercall));
			run->hypercall.nr = res.a2;
			run->hypercall.args[0] = res.a3;
			return 0;
		case EXIT_SYSTEM_OFF:
		case EXIT_SYSTEM_RESET:
			run->exit_reason = KVM_EXIT_SYSTEM_EVENT;
			memset(&run->system_event, 0, sizeof(run->system_event));
			run->system_event.type =
				reason == EXIT_SYSTEM_OFF ? KVM_SYSTEM_EVENT_SHUTDOWN : KVM_SYSTEM_EVENT_RESET;
			run->system_event.ndata = 1;
			return 0;
		case EXIT_FATAL:
			/* (A protected VM's syndrome and address are withheld: 0.) */
			pr_warn_ratelimited("kvm: vCPU %u's guest crashed (ESR %#llx, address %#llx); its VM runs no more\n",
					    vcpu->index, (unsigned long long)res.a2, (unsigned long long)res.a3);
			run->exit_reason = KVM_EXIT_FAIL_ENTRY;
			run->fail_entry.hardware_entry_failure_reason = res.a2;
			run->fail_entry.cpu = vcpu->index;
			return 0;
		case EXIT_WFI:
			/* WFE (deadline 0): runnable now. WFI: idle until a wake or a tick. */
			if (res.a2 == 0)
				cond_resched();
			else
				wait_for_event(vm, seen, res.a2 == U64_MAX ? MAX_SCHEDULE_TIMEOUT : 1);
			break;
		case EXIT_CPU_ON:
			if (res.a2 < vm->vcpu_count)
				WRITE_ONCE(vm->vcpus[res.a2]->power_off, false);
			signal_event(vm);
			break;
		case EXIT_WAKE:
			kick_vcpus(vm, res.a2);
			break;
		case EXIT_CPU_OFF:
			WRITE_ONCE(vcpu->power_off, true);
			cond_resched();
			break;
		case EXIT_INTERRUPTED:
		default:
			cond_resched();
			break;
		}
	}
}

/*
 * KVM_GET_MP_STATE/KVM_SET_MP_STATE: RUNNABLE or STOPPED (PSCI off). QEMU
 * powers its secondary vCPUs off this way rather than with the POWER_OFF
 * feature. Before the first run a write is the POWER_OFF feature's; after it
 * the power is the guest's (PSCI) and the hyp's: the state is what the runs
 * reported (off when the hyp said so or the guest called CPU_OFF, on after
 * a CPU_ON or a run), and a write may only keep it (EBUSY).
 */
static long vcpu_mp_state(struct kvm_vcpu_state *vcpu, unsigned int ioctl, void __user *argp)
{
	struct kvm_vm_state *vm = vcpu->vm;
	struct kvm_mp_state state;
	long ret = 0;

	if (!vcpu->initialised)
		return -ENOEXEC;
	if (ioctl == KVM_GET_MP_STATE) {
		state.mp_state = READ_ONCE(vcpu->power_off) ? KVM_MP_STATE_STOPPED : KVM_MP_STATE_RUNNABLE;
		return copy_to_user(argp, &state, sizeof(state)) ? -EFAULT : 0;
	}
	if (copy_from_user(&state, argp, sizeof(state)))
		return -EFAULT;
	if (state.mp_state != KVM_MP_STATE_RUNNABLE && state.mp_state != KVM_MP_STATE_STOPPED)
		return -EINVAL;
	mutex_lock(&vm->lock);
	if (!vm->handle)
		WRITE_ONCE(vcpu->power_off, state.mp_state == KVM_MP_STATE_STOPPED);
	else if (READ_ONCE(vcpu->power_off) != (state.mp_state == KVM_MP_STATE_STOPPED))
		ret = -EBUSY;
	mutex_unlock(&vm->lock);
	return ret;
}

static long vcpu_ioctl(struct file *file, unsigned int ioctl, unsigned long arg)
{
	struct kvm_vcpu_state *vcpu = file->private_data;
	void __user *argp = (void __user *)arg;
	long ret;

	/*
	 * KVM_RUN holds the lock while its vCPU waits (powered off, or in WFI
	 * with no timer): another thread's ioctl waits killably, as in Linux's KVM.
	 */
	if (mutex_lock_killable(&vcpu->lock))
		return -EINTR;
	switch (ioctl) {
	case KVM_RUN:
		ret = arg ? -EINVAL : vcpu_run(vcpu);
		break;
	case KVM_ARM_VCPU_INIT:
		ret = vcpu_init(vcpu, argp);
		break;
	case KVM_GET_ONE_REG:
	case KVM_SET_ONE_REG:
		ret = vcpu_one_reg(vcpu, ioctl, argp);
		break;
	case KVM_GET_REG_LIST:
		ret = vcpu->initialised ? vcpu_reg_list(argp) : -ENOEXEC;
		break;
	case KVM_GET_MP_STATE:
	case KVM_SET_MP_STATE:
		ret = vcpu_mp_state(vcpu, ioctl, argp);
		break;
	default:
		ret = -EINVAL;
	}
	mutex_unlock(&vcpu->lock);
	return ret;
}

static int vcpu_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct kvm_vcpu_state *vcpu = file->private_data;

	if (vma->vm_pgoff != 0 || vma->vm_end - vma->vm_start != PAGE_SIZE)
		return -EINVAL;
	return vm_insert_page(vma, vma->vm_start, virt_to_page(vcpu->run));
}

static int vcpu_release(struct inode *inode, struct file *file)
{
	struct kvm_vcpu_state *vcpu = file->private_data;

	/* The vCPU's state stays with the VM (its slot in vm->vcpus) until the VM goes. */
	kref_put(&vcpu->vm->ref, vm_free);
	return 0;
}

static const struct file_operations vcpu_fops = {
	.owner = THIS_MODULE,
	.release = vcpu_release,
	.unlocked_ioctl = vcpu_ioctl,
	.mmap = vcpu_mmap,
	.llseek = noop_llseek,
};

static long vm_create_vcpu(struct kvm_vm_state *vm, unsigned long id)
{
	struct kvm_vcpu_state *vcpu;
	long fd;

	if (id >= MAX_VCPUS)
		return -EINVAL;
	mutex_lock(&vm->lock);
	fd = -EBUSY;
	/* The hyp's VM has its vCPUs from its creation (the first KVM_RUN) on. */
	if (vm->handle)
		goto out;
	/* vCPU ids are the hyp's indices: made in order, each once. */
	fd = id < vm->vcpu_count ? -EEXIST : -EINVAL;
	if (id != vm->vcpu_count)
		goto out;
	fd = -ENOMEM;
	vcpu = kzalloc(sizeof(*vcpu), GFP_KERNEL_ACCOUNT);
	if (!vcpu)
		goto out;
	vcpu->run = (struct kvm_run *)get_zeroed_page(GFP_KERNEL_ACCOUNT);
	if (!vcpu->run) {
		kfree(vcpu);
		goto out;
	}
	vcpu->vm = vm;
	vcpu->index = id;
	mutex_init(&vcpu->lock);
	kref_get(&vm->ref);
	fd = anon_inode_getfd("kvm-vcpu", &vcpu_fops, vcpu, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		kref_put(&vm->ref, vm_free);
		free_page((unsigned long)vcpu->run);
		kfree(vcpu);
		goto out;
	}
	vm->vcpus[vm->vcpu_count++] = vcpu;
out:
	mutex_unlock(&vm->lock);
	return fd;
}

/* Whether [gpa, gpa + size) meets another used slot than `except`. */
static bool overlaps(struct kvm_vm_state *vm, u64 gpa, u64 size, unsigned int except)
{
	unsigned int i;

	for (i = 0; i < MAX_SLOTS; i++) {
		struct kvm_slot *s = &vm->slots[i];

		if (i != except && s->used && gpa < s->gpa + s->size && s->gpa < gpa + size)
			return true;
	}
	return false;
}

/*
 * Pins the slot's pages (all or none) and charges them to the process's
 * RLIMIT_MEMLOCK (none for CAP_IPC_LOCK), as pKVM's pins of a protected VM's
 * memory are: the number of VMs does not bound them. For a protected VM only
 * private anonymous memory, checked, pinned, charged and kept from the
 * kernel's copies (keep_from_kernel_copies) under one hold of the mmap lock,
 * so that no mapping changes meanwhile; its wrong memory is EINVAL whatever
 * the limit. Returns the pages pinned, or an errno (-ENOMEM over the limit).
 */
static long pin_slot_pages(struct kvm_vm_state *vm, unsigned long uaddr, unsigned long npages, struct page **pages)
{
	struct mm_struct *mm = current->mm;
	long pinned;

	if (!vm->is_protected) {
		pinned = pin_user_pages_fast(uaddr, npages, FOLL_WRITE | FOLL_LONGTERM, pages);
		if (pinned == npages && account_locked_vm(mm, npages, true)) {
			unpin_user_pages(pages, pinned);
			return -ENOMEM;
		}
		return pinned;
	}
	if (mmap_write_lock_killable(mm))
		return -EINTR;
	if (!private_anonymous(mm, uaddr, npages << PAGE_SHIFT)) {
		pinned = -EINVAL;
	} else {
		pinned = pin_guarded_pages(uaddr, npages, pages);
		if (pinned == npages && __account_locked_vm(mm, npages, true, current, capable(CAP_IPC_LOCK))) {
			unpin_user_pages(pages, pinned);
			pinned = -ENOMEM;
		} else if (pinned == npages) {
			keep_from_kernel_copies(mm, uaddr, npages << PAGE_SHIFT);
		}
	}
	mmap_write_unlock(mm);
	return pinned;
}

/* KVM_SET_USER_MEMORY_REGION with Linux's checks and errnos, then pin (and map). Under vm->lock. */
static long set_memory_region(struct kvm_vm_state *vm, const struct kvm_userspace_memory_region *mem)
{
	unsigned int id = mem->slot & 0xffff;
	struct kvm_slot *slot;
	unsigned long npages;
	long pinned;

	if (vm->dead)
		return -EIO;
	/* Linux's KVM: another process (a child, or one the fd was sent to) gets -EIO. */
	if (current->mm != vm->mm)
		return -EIO;
	if (mem->flags != 0 || (mem->slot >> 16) != 0 || id >= MAX_SLOTS)
		return -EINVAL;
	if (!PAGE_ALIGNED(mem->memory_size) || !PAGE_ALIGNED(mem->guest_phys_addr) ||
	    !PAGE_ALIGNED(mem->userspace_addr) ||
	    !access_ok(u64_to_user_ptr(mem->userspace_addr), mem->memory_size) ||
	    mem->guest_phys_addr + mem->memory_size < mem->guest_phys_addr)
		return -EINVAL;
	slot = &vm->slots[id];
	npages = mem->memory_size >> PAGE_SHIFT;
	if (mem->memory_size == 0) {
		if (!slot->used)
			return -EINVAL;
		/* pKVM refuses slot changes of a protected VM that ran; the hyp unmaps no lent page. */
		if (vm->handle)
			return vm->is_protected ? -EPERM : -EBUSY;
		release_slot(vm, slot, true);
		return 0;
	}
	if (slot->used) {
		/* Linux: the size and user address of a slot never change; a move may. */
		if (mem->userspace_addr != slot->uaddr || mem->memory_size != slot->size)
			return -EINVAL;
		if (mem->guest_phys_addr == slot->gpa)
			return 0;
		if (overlaps(vm, mem->guest_phys_addr, mem->memory_size, id))
			return -EEXIST;
		if (vm->handle)
			return vm->is_protected ? -EPERM : -EBUSY;
		if ((mem->guest_phys_addr + mem->memory_size) > (1ULL << vm->ipa_bits))
			return -EFAULT;
		slot->gpa = mem->guest_phys_addr;
		return 0;
	}
	if (overlaps(vm, mem->guest_phys_addr, mem->memory_size, MAX_SLOTS))
		return -EEXIST;
	/* arm64's KVM: a slot beyond the VM's IPA size is -EFAULT. */
	if ((mem->guest_phys_addr + mem->memory_size) > (1ULL << vm->ipa_bits))
		return -EFAULT;
	if (vm->handle && vm->is_protected)
		return -EPERM;
	if (npages > MAX_PINNED_PAGES - vm->pinned)
		return -ENOMEM;
	slot->pages = kvmalloc_array(npages, sizeof(*slot->pages), GFP_KERNEL_ACCOUNT);
	if (!slot->pages)
		return -ENOMEM;
	pinned = pin_slot_pages(vm, mem->userspace_addr, npages, slot->pages);
	if (pinned != npages) {
		if (pinned > 0)
			unpin_user_pages(slot->pages, pinned);
		kvfree(slot->pages);
		slot->pages = NULL;
		return pinned == -EINVAL || pinned == -EINTR || pinned == -ENOMEM ? pinned : -EFAULT;
	}
	slot->used = true;
	slot->gpa = mem->guest_phys_addr;
	slot->size = mem->memory_size;
	slot->uaddr = mem->userspace_addr;
	slot->npages = npages;
	vm->pinned += npages;
	if (vm->handle) {
		long ret = map_slot(vm, slot);

		if (ret) {
			/* A lent page cannot come back from a live VM: keep the slot. */
			return ret;
		}
	}
	return 0;
}

/* KVM_CHECK_EXTENSION, on /dev/kvm or a VM fd: only what this driver does. */
static long check_extension(unsigned long cap)
{
	switch (cap) {
	case KVM_CAP_USER_MEMORY:
	/*
	 * Two fixes of 2.6.29 that every KVM has and QEMU requires: a slot of
	 * size 0 deletes (before the VM first runs here, see set_memory_region),
	 * adjacent slots may be joined.
	 */
	case KVM_CAP_DESTROY_MEMORY_REGION_WORKS:
	case KVM_CAP_JOIN_MEMORY_REGIONS_WORKS:
	case KVM_CAP_ONE_REG:
	/* RUNNABLE and STOPPED (vcpu_mp_state). */
	case KVM_CAP_MP_STATE:
	/* PSCI: the hyp's 1.1, which a VMM also gets without asking for 0.2 (see KVM_ARM_VCPU_INIT). */
	case KVM_CAP_ARM_PSCI:
	case KVM_CAP_ARM_PSCI_0_2:
	case KVM_CAP_IMMEDIATE_EXIT:
	case KVM_CAP_DEVICE_CTRL:
	case KVM_CAP_IRQCHIP:
	case KVM_CAP_ARM_IRQ_LINE_LAYOUT_2:
	case KVM_CAP_IOEVENTFD:
	case KVM_CAP_IOEVENTFD_ANY_LENGTH:
	case KVM_CAP_IRQFD:
		return 1;
	case KVM_CAP_NR_VCPUS:
	case KVM_CAP_MAX_VCPUS:
	case KVM_CAP_MAX_VCPU_ID:
		return MAX_VCPUS;
	case KVM_CAP_NR_MEMSLOTS:
		return MAX_SLOTS;
	case KVM_CAP_ARM_VM_IPA_SIZE:
		return hyp_ipa_bits();
	default:
		return 0;
	}
}

static long vm_ioctl(struct file *file, unsigned int ioctl, unsigned long arg)
{
	struct kvm_vm_state *vm = file->private_data;
	void __user *argp = (void __user *)arg;

	switch (ioctl) {
	case KVM_CREATE_VCPU:
		return vm_create_vcpu(vm, arg);
	case KVM_SET_USER_MEMORY_REGION: {
		struct kvm_userspace_memory_region mem;
		long ret;

		if (copy_from_user(&mem, argp, sizeof(mem)))
			return -EFAULT;
		mutex_lock(&vm->lock);
		ret = set_memory_region(vm, &mem);
		mutex_unlock(&vm->lock);
		return ret;
	}
	case KVM_ARM_PREFERRED_TARGET: {
		struct kvm_vcpu_init init = { .target = KVM_ARM_TARGET_GENERIC_V8 };

		return copy_to_user(argp, &init, sizeof(init)) ? -EFAULT : 0;
	}
	case KVM_CHECK_EXTENSION:
		return check_extension(arg);
	case KVM_CREATE_DEVICE:
		return kvm_vgic_create_device(vm, argp);
	case KVM_IRQ_LINE:
		return kvm_vgic_irq_line(vm, argp);
	case KVM_IOEVENTFD:
		return kvm_ioeventfd(vm, argp);
	case KVM_IRQFD:
		return kvm_irqfd(vm, argp);
	default:
		return -EINVAL;
	}
}

static int vm_release(struct inode *inode, struct file *file)
{
	struct kvm_vm_state *vm = file->private_data;

	kref_put(&vm->ref, vm_free);
	return 0;
}

static const struct file_operations vm_fops = {
	.owner = THIS_MODULE,
	.release = vm_release,
	.unlocked_ioctl = vm_ioctl,
	.llseek = noop_llseek,
};

static long create_vm(unsigned long type)
{
	unsigned long ipa_bits = KVM_VM_TYPE_ARM_IPA_SIZE(type);
	struct kvm_vm_state *vm;
	long fd;

	if (type & ~(KVM_VM_TYPE_ARM_IPA_SIZE_MASK | KVM_VM_TYPE_ARM_PROTECTED))
		return -EINVAL;
	if (ipa_bits == 0)
		ipa_bits = DEFAULT_IPA_BITS;
	if (ipa_bits < MIN_IPA_BITS || ipa_bits > hyp_ipa_bits())
		return -EINVAL;
	vm = kzalloc(sizeof(*vm), GFP_KERNEL_ACCOUNT);
	if (!vm)
		return -ENOMEM;
	kref_init(&vm->ref);
	mutex_init(&vm->lock);
	init_waitqueue_head(&vm->events_wait);
	kvm_eventfd_init(vm);
	vm->is_protected = type & KVM_VM_TYPE_ARM_PROTECTED;
	vm->ipa_bits = ipa_bits;
	vm->mm = current->mm;
	mmgrab(vm->mm);
	/* The guest's virtual counter starts at 0 with the VM, as Linux's. */
	vm->count_offset = physical_count();
	if (memcache_client_start() != 0) {
		mmdrop(vm->mm);
		kfree(vm);
		return -ENOMEM;
	}
	fd = anon_inode_getfd("kvm-vm", &vm_fops, vm, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		kref_put(&vm->ref, vm_free);
	return fd;
}

static long kvm_ioctl(struct file *file, unsigned int ioctl, unsigned long arg)
{
	switch (ioctl) {
	case KVM_GET_API_VERSION:
		return arg ? -EINVAL : KVM_API_VERSION_NUMBER;
	case KVM_CHECK_EXTENSION:
		return check_extension(arg);
	case KVM_GET_VCPU_MMAP_SIZE:
		return arg ? -EINVAL : PAGE_SIZE;
	case KVM_CREATE_VM:
		return create_vm(arg);
	default:
		return -EINVAL;
	}
}

static const struct file_operations kvm_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = kvm_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice kvm_device = {
	.minor = KVM_MINOR,
	.name = "kvm",
	.fops = &kvm_fops,
	.mode = 0600,
};

int kvm_dev_register(void)
{
	int ret = kvm_eventfd_module_init();

	if (ret)
		return ret;
	ret = protected_memory_register();
	if (ret) {
		kvm_eventfd_module_exit();
		return ret;
	}
	ret = misc_register(&kvm_device);
	if (ret) {
		protected_memory_deregister();
		kvm_eventfd_module_exit();
		return ret;
	}
	pr_info("hyp: /dev/kvm ready (KVM API %d, IPA limit %u bits)\n", KVM_API_VERSION_NUMBER, hyp_ipa_bits());
	return 0;
}

void kvm_dev_deregister(void)
{
	misc_deregister(&kvm_device);
	protected_memory_deregister();
	kvm_eventfd_module_exit();
}
