// SPDX-License-Identifier: MIT
/*
 * kvm-api-test: the KVM API of the hyp's /dev/kvm (host-shim/linux-module/
 * dev_kvm.c), checked from user space in the Linux host, for a non-protected
 * and a protected VM: each ioctl, its errors for bad input and calls in the
 * wrong state, and a tiny guest (raw instructions in a memory slot) that
 * makes an MMIO store, an MMIO load (value supplied here), waits in WFI
 * (where a signal ends KVM_RUN with -EINTR) and calls PSCI SYSTEM_OFF; every
 * exit is checked exactly. Prints one "kvm-api-test: ok: ..." line per check
 * ("FAILED" for a failed one) and "kvm-api-test: all N checks passed".
 * Exits 0 only if every check passed. Raw ioctls rather than the rust-vmm
 * crates: the checks need malformed calls (wrong sizes, bad fds, bad ids) the
 * crates' typed wrappers do not let a caller make.
 *   kvm-api-test
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kvm_test.h"

/* The guest (see the header): its instructions, in order. */
static const uint32_t guest_code[] = {
	0xd2a20001, /* mov x1, #0x10000000 */
	0xd297dde2, /* mov x2, #0xbeef */
	0xb9000022, /* str w2, [x1]        MMIO store */
	0xb9400823, /* ldr w3, [x1, #8]    MMIO load */
	0xb9001023, /* str w3, [x1, #16]   the loaded value, stored back */
	0xd503207f, /* wfi                 nothing to wake it: the host waits */
	0xd2800100, /* mov x0, #0x8 */
	0xf2b08000, /* movk x0, #0x8400, lsl #16: PSCI SYSTEM_OFF */
	0xd4000002, /* hvc #0 */
	0x14000000, /* b . */
};
#define MMIO_READ_VALUE 0xcafef00dU

int checks, failures;
/* What the checks of the moment are about: "system", or the VM type. */
const char *scope = "system";

void check(int ok, const char *fmt, ...)
{
	va_list args;

	checks++;
	if (!ok)
		failures++;
	printf("kvm-api-test: %s: ", ok ? "ok" : "FAILED");
	va_start(args, fmt);
	vprintf(fmt, args);
	va_end(args);
	printf("\n");
}

/* An ioctl that must fail with `expected` (errno). */
void expect_errno(int fd, unsigned long request, unsigned long arg, int expected, const char *what)
{
	int ret = ioctl(fd, request, arg);
	int err = errno;

	check(ret == -1 && err == expected, "%s: %s: %s (expected %s)", scope, what,
	      ret == -1 ? strerror(err) : "succeeded", strerror(expected));
}

uint64_t core_id(unsigned long offset)
{
	return KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE | (offset / sizeof(uint32_t));
}


int get_reg(int vcpu, uint64_t id, uint64_t *value)
{
	struct kvm_one_reg reg = { .id = id, .addr = (uint64_t)(uintptr_t)value };

	return ioctl(vcpu, KVM_GET_ONE_REG, &reg) == 0 ? 0 : errno;
}

int set_reg(int vcpu, uint64_t id, uint64_t value)
{
	struct kvm_one_reg reg = { .id = id, .addr = (uint64_t)(uintptr_t)&value };

	return ioctl(vcpu, KVM_SET_ONE_REG, &reg) == 0 ? 0 : errno;
}

int reg_io(int vcpu, unsigned long request, uint64_t id, void *value)
{
	struct kvm_one_reg reg = { .id = id, .addr = (uint64_t)(uintptr_t)value };

	return ioctl(vcpu, request, &reg) == 0 ? 0 : errno;
}

/* The id of a core register of another size than 64 bits. */
static uint64_t core_id_sized(uint64_t id, uint64_t size)
{
	return (id & ~KVM_REG_SIZE_MASK) | size;
}

#define V_REG(n) core_id_sized(CORE_REG(fp_regs.vregs[n]), KVM_REG_SIZE_U128)
#define FPCR_REG core_id_sized(CORE_REG(fp_regs.fpcr), KVM_REG_SIZE_U32)
#define TIMER_REG_COUNT KVM_REG_ARM_TIMER_CNT

/*
 * The registers beyond the hyp's first ones (SP_EL0, ELR_EL1, SPSRs, V0..V31,
 * FPSR, FPCR, the timer's) before the first run: a non-protected VM's take
 * what the VMM writes, a protected VM's keep their reset values.
 */
static void check_more_registers_before_run(int vcpu, int protected, const char *name)
{
	const uint64_t pattern[2] = { 0x0123456789abcdefULL, 0xfedcba9876543210ULL };
	uint64_t vreg[2] = { pattern[0], pattern[1] }, value = 0, later = 0;
	uint32_t fpcr = 0x03000000;
	int err;

	check(get_reg(vcpu, ARM64_SYS_REG(3, 0, 1, 0, 0), &value) == ENOENT,
	      "%s: a register the driver does not have (SCTLR_EL1): %s", name, strerror(ENOENT));
	check(reg_io(vcpu, KVM_GET_ONE_REG, core_id_sized(V_REG(5), KVM_REG_SIZE_U64), &value) == EINVAL,
	      "%s: V5 as a 64-bit register: %s", name, strerror(EINVAL));
	err = reg_io(vcpu, KVM_SET_ONE_REG, V_REG(5), vreg);
	check(err == (protected ? EPERM : 0), "%s: V5 (128 bits) set before the first run: %s", name,
	      err ? strerror(err) : "done");
	vreg[0] = vreg[1] = 1;
	check(reg_io(vcpu, KVM_GET_ONE_REG, V_REG(5), vreg) == 0 && vreg[0] == (protected ? 0 : pattern[0]) &&
		      vreg[1] == (protected ? 0 : pattern[1]),
	      "%s: V5 reads back %#llx:%#llx", name, (unsigned long long)vreg[1], (unsigned long long)vreg[0]);
	err = set_reg(vcpu, CORE_REG(elr_el1), 0x1234);
	check(err == (protected ? EPERM : 0), "%s: ELR_EL1 set: %s", name, err ? strerror(err) : "done");
	err = reg_io(vcpu, KVM_SET_ONE_REG, FPCR_REG, &fpcr);
	check(err == (protected ? EPERM : 0), "%s: FPCR (32 bits) set: %s", name, err ? strerror(err) : "done");
	/* PSTATE's condition flags are no starting state: QEMU's reset PSTATE has Z set. */
	err = set_reg(vcpu, CORE_REG(regs.pstate), RESET_PSTATE | 1ULL << 30);
	check(err == 0, "%s: pstate with the Z flag (QEMU's reset value): %s", name, err ? strerror(err) : "done");
	err = set_reg(vcpu, CORE_REG(regs.pstate), 0x3c4);
	check(err == (protected ? EPERM : 0), "%s: pstate of another mode (EL1t): %s", name,
	      err ? strerror(err) : "done");
	err = set_reg(vcpu, CORE_REG(regs.pstate), RESET_PSTATE);
	check(err == 0, "%s: the reset pstate again: %s", name, err ? strerror(err) : "done");
	/* The AArch32 SPSRs: the driver keeps them for user space, in both VM types. */
	check(set_reg(vcpu, CORE_REG(spsr[KVM_SPSR_FIQ]), 0x1d3) == 0 &&
		      get_reg(vcpu, CORE_REG(spsr[KVM_SPSR_FIQ]), &value) == 0 && value == 0x1d3,
	      "%s: SPSR_fiq kept: %#llx", name, (unsigned long long)value);
	check(get_reg(vcpu, TIMER_REG_COUNT, &value) == 0 && get_reg(vcpu, TIMER_REG_COUNT, &later) == 0 &&
		      later >= value,
	      "%s: the virtual count runs: %llu, then %llu", name, (unsigned long long)value,
	      (unsigned long long)later);
	/* The VM's count, not the guest's state: its host sets it in both types (before the first run). */
	err = set_reg(vcpu, TIMER_REG_COUNT, 1ULL << 40);
	check(err == 0, "%s: the virtual count set: %s", name, err ? strerror(err) : "done");
}

/* The vCPU's power as KVM_GET/SET_MP_STATE see it (QEMU powers its secondaries off this way). */
static int mp_state(int vcpu, unsigned long request, uint32_t *state)
{
	struct kvm_mp_state mp = { .mp_state = *state };
	int ret = ioctl(vcpu, request, &mp);

	*state = mp.mp_state;
	return ret == 0 ? 0 : errno;
}

static void check_mp_state_before_run(int vcpu, const char *name)
{
	uint32_t state = 99;

	check(mp_state(vcpu, KVM_GET_MP_STATE, &state) == 0 && state == KVM_MP_STATE_RUNNABLE,
	      "%s: KVM_GET_MP_STATE out of KVM_ARM_VCPU_INIT: %u (runnable)", name, state);
	state = KVM_MP_STATE_HALTED;
	check(mp_state(vcpu, KVM_SET_MP_STATE, &state) == EINVAL, "%s: KVM_SET_MP_STATE HALTED: %s", name,
	      strerror(EINVAL));
	state = KVM_MP_STATE_STOPPED;
	check(mp_state(vcpu, KVM_SET_MP_STATE, &state) == 0 && mp_state(vcpu, KVM_GET_MP_STATE, &state) == 0 &&
		      state == KVM_MP_STATE_STOPPED,
	      "%s: KVM_SET_MP_STATE STOPPED, read back: %u", name, state);
	state = KVM_MP_STATE_RUNNABLE;
	check(mp_state(vcpu, KVM_SET_MP_STATE, &state) == 0 && mp_state(vcpu, KVM_GET_MP_STATE, &state) == 0 &&
		      state == KVM_MP_STATE_RUNNABLE,
	      "%s: KVM_SET_MP_STATE RUNNABLE again, read back: %u", name, state);
}

static void check_mp_state_after_run(int vcpu, const char *name)
{
	uint32_t state = KVM_MP_STATE_STOPPED;

	check(mp_state(vcpu, KVM_SET_MP_STATE, &state) == EBUSY, "%s: KVM_SET_MP_STATE STOPPED after the first run: %s",
	      name, strerror(EBUSY));
	state = KVM_MP_STATE_RUNNABLE;
	check(mp_state(vcpu, KVM_SET_MP_STATE, &state) == 0 && mp_state(vcpu, KVM_GET_MP_STATE, &state) == 0 &&
		      state == KVM_MP_STATE_RUNNABLE,
	      "%s: KVM_SET_MP_STATE keeping RUNNABLE after the first run: %u", name, state);
}

/* The VmFlags of the mapping holding address (/proc/self/smaps), without the newline; 0 if found. */
static int mapping_flags(const void *address, char *flags, size_t size)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	char line[512];
	int inside = 0, found = 0;

	if (!f)
		return -1;
	while (!found && fgets(line, sizeof(line), f)) {
		unsigned long start, end;

		/* A mapping's first line: "start-end perms ..." (no field name is two hex numbers). */
		if (sscanf(line, "%lx-%lx ", &start, &end) == 2) {
			inside = (unsigned long)address >= start && (unsigned long)address < end;
		} else if (inside && strncmp(line, "VmFlags:", 8) == 0) {
			line[strcspn(line, "\n")] = 0;
			/* (Truncated to the caller's buffer if longer.) */
			snprintf(flags, size, "%.*s", (int)(size - 1), line + 8);
			found = 1;
		}
	}
	fclose(f);
	return found ? 0 : -1;
}

/* Whether smaps' VmFlags list holds the two-letter flag. */
static int has_flag(const char *flags, const char *flag)
{
	for (const char *p = strstr(flags, flag); p; p = strstr(p + 1, flag))
		if ((p == flags || p[-1] == ' ') && (p[2] == ' ' || p[2] == 0))
			return 1;
	return 0;
}

/*
 * Hibernation's snapshot reads every page the kernel has: while a protected
 * VM lives it is refused (EBUSY from the driver's PM notifier, before any
 * task is frozen), where this kernel can hibernate at all.
 */
static void check_hibernation_refused(const char *name)
{
	char states[128] = "";
	int fd = open("/sys/power/state", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, states, sizeof(states) - 1);
	int err = 0;

	if (fd >= 0)
		close(fd);
	states[strcspn(states, "\n")] = 0;
	if (n <= 0 || !strstr(states, "disk")) {
		check(1, "%s: this kernel cannot hibernate (/sys/power/state: %s)", name, states);
		return;
	}
	fd = open("/sys/power/state", O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, "disk", 4) != -1)
		err = fd < 0 ? errno : 0;
	else
		err = errno;
	if (fd >= 0)
		close(fd);
	check(err == EBUSY, "%s: hibernation while a protected VM lives: %s", name, err ? strerror(err) : "not refused");
}

/*
 * A protected VM's memory, once the guest ran, is kept from the kernel's own
 * copies of it, which would read pages that left the host (an abort the
 * kernel does not survive): its mapping is left out of forks ("dc") and core
 * dumps ("dd") and is not KSM's ("mg"); a fork now gives the child no mapping
 * of it, and the kernel copied nothing.
 */
static void check_kept_from_kernel_copies(const uint8_t *memory, const char *name)
{
	char flags[256] = "";
	pid_t child;
	int status = -1;

	check(mapping_flags(memory, flags, sizeof(flags)) == 0 && has_flag(flags, "dc") && has_flag(flags, "dd") &&
		      !has_flag(flags, "mg"),
	      "%s: the slot's mapping is left out of forks and core dumps, not KSM's: VmFlags%s", name, flags);
	child = fork();
	if (child == 0)
		_exit(madvise((void *)memory, PAGE, MADV_NORMAL) == -1 && errno == ENOMEM ? 0 : 1);
	if (child > 0)
		waitpid(child, &status, 0);
	check(child > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "%s: a fork after the guest ran: the child has no mapping of the guest's memory", name);
	check_hibernation_refused(name);
}

/* The same after the first run: a non-protected VM's went to the hyp with it, a protected VM's are out of reach. */
static void check_more_registers_after_run(int vcpu, int protected, const char *name)
{
	uint64_t vreg[2] = { 0, 0 }, value = 0;
	uint32_t fpcr = 0;
	int err;

	err = reg_io(vcpu, KVM_GET_ONE_REG, V_REG(5), vreg);
	/* The count went on from where the VMM set it (1 << 40), in the hyp now, in both types. */
	check(get_reg(vcpu, TIMER_REG_COUNT, &value) == 0 && value >= 1ULL << 40 && value < (1ULL << 40) + (1ULL << 36),
	      "%s: the virtual count in the hyp: %#llx", name, (unsigned long long)value);
	if (protected) {
		check(err == EPERM, "%s: V5 after the first run: %s", name, strerror(err));
		return;
	}
	check(err == 0 && vreg[0] == 0x0123456789abcdefULL && vreg[1] == 0xfedcba9876543210ULL,
	      "%s: V5 in the hyp's vCPU: %#llx:%#llx", name, (unsigned long long)vreg[1], (unsigned long long)vreg[0]);
	check(get_reg(vcpu, CORE_REG(elr_el1), &value) == 0 && value == 0x1234, "%s: ELR_EL1 in the hyp's vCPU: %#llx",
	      name, (unsigned long long)value);
	check(reg_io(vcpu, KVM_GET_ONE_REG, FPCR_REG, &fpcr) == 0 && fpcr == 0x03000000,
	      "%s: FPCR in the hyp's vCPU: %#x", name, fpcr);
	err = set_reg(vcpu, TIMER_REG_COUNT, 1ULL << 41);
	check(err == 0 && get_reg(vcpu, TIMER_REG_COUNT, &value) == 0 && value >= 1ULL << 41 &&
		      value < (1ULL << 41) + (1ULL << 36),
	      "%s: the virtual count moved in the hyp: %#llx", name, (unsigned long long)value);
}

int set_slot(int vm, uint32_t slot, uint64_t gpa, uint64_t size, void *host, uint32_t flags)
{
	struct kvm_userspace_memory_region region = {
		.slot = slot,
		.flags = flags,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = (uint64_t)(uintptr_t)host,
	};

	return ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) == 0 ? 0 : errno;
}

uint8_t *guest_memory(const void *code, size_t size)
{
	uint8_t *memory = mmap(NULL, SLOT_PAGES * PAGE, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);

	if (memory == MAP_FAILED) {
		check(0, "%s: mmap of the guest's memory: %s", scope, strerror(errno));
		return NULL;
	}
	memcpy(memory, code, size);
	return memory;
}

/* A counter of /proc/vmstat, exact: the CPUs' pending deltas folded in first. */
static unsigned long vmstat(const char *name)
{
	char line[128];
	unsigned long value = 0;
	size_t len = strlen(name);
	int refresh = open("/proc/sys/vm/stat_refresh", O_WRONLY | O_CLOEXEC);
	FILE *f;

	if (refresh >= 0) {
		if (write(refresh, "1", 1) != 1)
			printf("kvm-api-test: vm/stat_refresh: %s\n", strerror(errno));
		close(refresh);
	}
	f = fopen("/proc/vmstat", "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, name, len) == 0 && line[len] == ' ')
			value = strtoul(line + len + 1, NULL, 10);
	fclose(f);
	return value;
}

void on_alarm(int signal)
{
	(void)signal;
}

uint64_t mmio_data(const struct kvm_run *run)
{
	uint64_t value = 0;

	memcpy(&value, run->mmio.data, sizeof(value));
	return value;
}

/* The driver module's reference count (/sys/module/hyp_dev/refcnt), or -1. */
static long module_references(void)
{
	char text[32] = "";
	int fd = open("/sys/module/hyp_dev/refcnt", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, text, sizeof(text) - 1);

	if (fd >= 0)
		close(fd);
	return n > 0 ? strtol(text, NULL, 10) : -1;
}

/* One VM of the type, through its whole life. */
static void check_vm(int kvm, int protected, int ipa_limit)
{
	const char *name = protected ? "protected" : "non-protected";
	unsigned long type = protected ? KVM_VM_TYPE_ARM_PROTECTED : KVM_VM_TYPE_ARM_IPA_SIZE(40);
	unsigned long pins_acquired = vmstat("nr_foll_pin_acquired");
	unsigned long pins_released = vmstat("nr_foll_pin_released");
	struct kvm_vcpu_init init;
	struct kvm_reg_list *list;
	struct kvm_run *run;
	struct itimerval alarm_in = { .it_value = { .tv_usec = 200000 } };
	uint64_t value = 0;
	uint8_t *memory;
	int vm, vcpu, ret, err;
	long references_at_start = module_references(), references;

	scope = name;
	vm = ioctl(kvm, KVM_CREATE_VM, type);
	check(vm >= 0, "%s: KVM_CREATE_VM(%#lx): %s", name, type, vm >= 0 ? "a VM fd" : strerror(errno));
	if (vm < 0)
		return;
	ret = ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_ARM_VM_IPA_SIZE);
	check(ret == ipa_limit, "%s: KVM_CHECK_EXTENSION on the VM fd: IPA size %d", name, ret);
	memset(&init, 0xff, sizeof(init));
	ret = ioctl(vm, KVM_ARM_PREFERRED_TARGET, &init);
	check(ret == 0 && init.target == KVM_ARM_TARGET_GENERIC_V8 && init.features[0] == 0,
	      "%s: KVM_ARM_PREFERRED_TARGET: target %u, features %#x", name, init.target, init.features[0]);

	/* Memory: a slot, and Linux's errors for the bad ones. */
	memory = guest_memory(guest_code, sizeof(guest_code));
	if (!memory) {
		close(vm);
		return;
	}
	if (protected)
		check(madvise(memory, SLOT_PAGES * PAGE, MADV_MERGEABLE) == 0,
		      "%s: the guest's memory offered to KSM first, as QEMU offers its RAM", name);
	check(set_slot(vm, 0, GUEST_BASE, SLOT_PAGES * PAGE, memory, 0) == 0,
	      "%s: KVM_SET_USER_MEMORY_REGION slot 0: 64 KiB at IPA %#llx", name, GUEST_BASE);
	err = set_slot(vm, 1, GUEST_BASE + PAGE, PAGE, memory, 0);
	check(err == EEXIST, "%s: overlapping slot: %s", name, strerror(err));
	err = set_slot(vm, 1, GUEST_BASE + 0x100000 + 8, PAGE, memory, 0);
	check(err == EINVAL, "%s: unaligned guest address: %s", name, strerror(err));
	err = set_slot(vm, 1, GUEST_BASE + 0x100000, PAGE, memory + 8, 0);
	check(err == EINVAL, "%s: unaligned user address: %s", name, strerror(err));
	err = set_slot(vm, 1, GUEST_BASE + 0x100000, PAGE + 8, memory, 0);
	check(err == EINVAL, "%s: unaligned size: %s", name, strerror(err));
	err = set_slot(vm, 32, GUEST_BASE + 0x100000, PAGE, memory, 0);
	check(err == EINVAL, "%s: slot 32: %s", name, strerror(err));
	err = set_slot(vm, 1, GUEST_BASE + 0x100000, PAGE, memory, KVM_MEM_READONLY);
	check(err == EINVAL, "%s: read-only slot (unsupported flag): %s", name, strerror(err));
	err = set_slot(vm, 5, 0, 0, NULL, 0);
	check(err == EINVAL, "%s: deleting a slot that does not exist: %s", name, strerror(err));
	err = set_slot(vm, 0, GUEST_BASE, 2 * SLOT_PAGES * PAGE, memory, 0);
	check(err == EINVAL, "%s: changing slot 0's size: %s", name, strerror(err));
	err = set_slot(vm, 1, 1ULL << 40, PAGE, memory, 0);
	check(err == EFAULT, "%s: slot beyond the VM's 40-bit IPA size: %s", name, strerror(err));
	expect_errno(vm, _IOW(KVMIO, 0x46, uint64_t), 0, EINVAL, "KVM_SET_USER_MEMORY_REGION of the wrong size");
	{
		/* Linux's KVM: only the VM's creator sets its slots; a child gets EIO. */
		pid_t child = fork();
		int status = -1;

		if (child == 0)
			_exit(set_slot(vm, 3, GUEST_BASE + 0x300000, PAGE, memory, 0) == EIO ? 0 : 1);
		if (child > 0)
			waitpid(child, &status, 0);
		check(child > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "%s: KVM_SET_USER_MEMORY_REGION from a forked child: EIO", name);
	}
	{
		struct kvm_irq_level line = { .irq = KVM_ARM_IRQ_TYPE_SPI << KVM_ARM_IRQ_TYPE_SHIFT | 40, .level = 1 };

		expect_errno(vm, KVM_IRQ_LINE, (unsigned long)&line, ENXIO, "KVM_IRQ_LINE without a vGIC");
	}

	/* The vCPU. */
	expect_errno(vm, KVM_CREATE_VCPU, 8, EINVAL, "KVM_CREATE_VCPU 8 (beyond the 8 vCPUs)");
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	check(vcpu >= 0, "%s: KVM_CREATE_VCPU 0: %s", name, vcpu >= 0 ? "a vCPU fd" : strerror(errno));
	if (vcpu < 0)
		goto out_vm;
	expect_errno(vm, KVM_CREATE_VCPU, 0, EEXIST, "KVM_CREATE_VCPU 0 again");
	run = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	check(run == MAP_FAILED && errno == EINVAL, "%s: mmap of two pages of the vCPU: %s", name,
	      run == MAP_FAILED ? strerror(errno) : "mapped");
	if (run != MAP_FAILED)
		munmap(run, 2 * PAGE);
	run = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	check(run != MAP_FAILED, "%s: mmap of struct kvm_run", name);
	if (run == MAP_FAILED)
		goto out_vcpu;
	if (protected) {
		/*
		 * Only private anonymous memory may become a protected VM's: the
		 * kernel reads a driver's page (the run page) or a shared one on
		 * its own, and would take an abort once it left the host.
		 */
		void *shared = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

		err = set_slot(vm, 2, GUEST_BASE + 0x200000, PAGE, run, 0);
		check(err == EINVAL, "%s: the vCPU's run page as a slot: %s", name, strerror(err));
		err = shared == MAP_FAILED ? 0 : set_slot(vm, 2, GUEST_BASE + 0x200000, PAGE, shared, 0);
		check(err == EINVAL, "%s: shared memory as a slot: %s", name, strerror(err));
		if (shared != MAP_FAILED)
			munmap(shared, PAGE);
	}
	expect_errno(vcpu, KVM_RUN, 0, ENOEXEC, "KVM_RUN before KVM_ARM_VCPU_INIT");
	check(get_reg(vcpu, CORE_REG(regs.pc), &value) == ENOEXEC, "%s: KVM_GET_ONE_REG before KVM_ARM_VCPU_INIT: %s",
	      name, strerror(ENOEXEC));
	memset(&init, 0, sizeof(init));
	init.target = KVM_ARM_TARGET_GENERIC_V8;
	init.features[0] = 1U << KVM_ARM_VCPU_PMU_V3;
	expect_errno(vcpu, KVM_ARM_VCPU_INIT, (unsigned long)&init, EINVAL, "KVM_ARM_VCPU_INIT with the PMU feature");
	init.features[0] = 1U << KVM_ARM_VCPU_PSCI_0_2;
	init.target = 0;
	expect_errno(vcpu, KVM_ARM_VCPU_INIT, (unsigned long)&init, EINVAL, "KVM_ARM_VCPU_INIT of target 0");
	init.target = KVM_ARM_TARGET_GENERIC_V8;
	ret = ioctl(vcpu, KVM_ARM_VCPU_INIT, &init);
	check(ret == 0, "%s: KVM_ARM_VCPU_INIT (PSCI 0.2): %s", name, ret == 0 ? "done" : strerror(errno));

	/* Registers before the first run. */
	list = calloc(1, sizeof(*list) + REG_LIST_LENGTH * sizeof(uint64_t));
	if (!list)
		goto out_vcpu;
	ret = ioctl(vcpu, KVM_GET_REG_LIST, list);
	check(ret == -1 && errno == E2BIG && list->n == REG_LIST_LENGTH, "%s: KVM_GET_REG_LIST of 0: E2BIG, n = %llu",
	      name, (unsigned long long)list->n);
	ret = ioctl(vcpu, KVM_GET_REG_LIST, list);
	check(ret == 0 && list->reg[0] == CORE_REG(regs.regs[0]) && list->reg[31] == CORE_REG(regs.sp) &&
		      list->reg[32] == CORE_REG(regs.pc) && list->reg[33] == CORE_REG(regs.pstate) &&
		      list->reg[34] == CORE_REG(sp_el1) && list->reg[35] == CORE_REG(elr_el1) &&
		      list->reg[36] == CORE_REG(spsr[0]) && list->reg[41] == V_REG(0) && list->reg[72] == V_REG(31) &&
		      list->reg[73] == core_id_sized(CORE_REG(fp_regs.fpsr), KVM_REG_SIZE_U32) &&
		      list->reg[74] == FPCR_REG && list->reg[75] == KVM_REG_ARM_PSCI_VERSION &&
		      list->reg[76] == KVM_REG_ARM_TIMER_CTL && list->reg[77] == KVM_REG_ARM_TIMER_CNT &&
		      list->reg[78] == KVM_REG_ARM_TIMER_CVAL && list->reg[79] == REG_MPIDR_EL1,
	      "%s: KVM_GET_REG_LIST: Linux's core registers, the PSCI version, the timer's, MPIDR_EL1", name);
	free(list);
	check(get_reg(vcpu, REG_MPIDR_EL1, &value) == 0 && value == 0x80000000ULL, "%s: MPIDR_EL1 of vCPU 0: %#llx",
	      name, (unsigned long long)value);
	err = set_reg(vcpu, REG_MPIDR_EL1, 0x80000001ULL);
	check(err == EINVAL && set_reg(vcpu, REG_MPIDR_EL1, 0x80000000ULL) == 0,
	      "%s: MPIDR_EL1 keeps its value (another: %s)", name, strerror(err));
	check(get_reg(vcpu, KVM_REG_ARM_PSCI_VERSION, &value) == 0 && value == 0x10001,
	      "%s: the PSCI version pseudo-register: %#llx (1.1)", name, (unsigned long long)value);
	err = set_reg(vcpu, KVM_REG_ARM_PSCI_VERSION, 0x10000);
	check(err == EINVAL, "%s: PSCI version 1.0 refused: %s", name, strerror(err));
	check(get_reg(vcpu, CORE_REG(regs.pstate), &value) == 0 && value == RESET_PSTATE,
	      "%s: pstate out of reset: %#llx", name, (unsigned long long)value);
	check_more_registers_before_run(vcpu, protected, name);
	check_mp_state_before_run(vcpu, name);
	check(get_reg(vcpu, (CORE_REG(regs.regs[0]) & ~KVM_REG_SIZE_MASK) | KVM_REG_SIZE_U32, &value) == EINVAL,
	      "%s: x0 as a 32-bit register: %s", name, strerror(EINVAL));
	check(set_reg(vcpu, CORE_REG(regs.pc), GUEST_BASE) == 0 && get_reg(vcpu, CORE_REG(regs.pc), &value) == 0 &&
		      value == GUEST_BASE,
	      "%s: pc set and read back: %#llx", name, (unsigned long long)value);
	err = set_reg(vcpu, CORE_REG(regs.regs[5]), 0x1234);
	check(err == (protected ? EPERM : 0), "%s: setting x5 before the first run: %s", name,
	      err ? strerror(err) : "done");

	/* The first run: immediate_exit. The VM now exists in the hyp. */
	references = module_references();
	run->immediate_exit = 1;
	expect_errno(vcpu, KVM_RUN, 0, EINTR, "KVM_RUN with immediate_exit");
	/*
	 * While the hyp has a protected VM the module stays loaded: its
	 * notifier is what refuses hibernation, which would read the VM's pages.
	 */
	{
		long now = module_references();

		check(references >= 0 && now == references + protected,
		      "%s: the module's references with the VM in the hyp: %ld, %ld before", name, now, references);
	}
	run->immediate_exit = 0;
	expect_errno(vcpu, KVM_RUN, 1, EINVAL, "KVM_RUN with an argument");
	expect_errno(vm, KVM_CREATE_VCPU, 1, EBUSY, "KVM_CREATE_VCPU after the first run");
	err = get_reg(vcpu, CORE_REG(regs.pc), &value);
	if (protected)
		check(err == EPERM, "%s: pc after the first run: %s", name, strerror(err));
	else
		check(err == 0 && value == GUEST_BASE, "%s: pc after the first run: %#llx", name,
		      (unsigned long long)value);
	err = set_reg(vcpu, CORE_REG(regs.regs[6]), 1);
	check(err == (protected ? EPERM : 0), "%s: setting x6 after the first run: %s", name,
	      err ? strerror(err) : "done");
	check_more_registers_after_run(vcpu, protected, name);
	check_mp_state_after_run(vcpu, name);

	/* The guest: MMIO store, MMIO load, WFI (a signal), SYSTEM_OFF. */
	ret = ioctl(vcpu, KVM_RUN, 0);
	check(ret == 0 && run->exit_reason == KVM_EXIT_MMIO && run->mmio.phys_addr == MMIO_BASE &&
		      run->mmio.len == 4 && run->mmio.is_write && mmio_data(run) == 0xbeef,
	      "%s: MMIO store exit: reason %u, address %#llx, len %u, write %u, data %#llx", name, run->exit_reason,
	      (unsigned long long)run->mmio.phys_addr, run->mmio.len, run->mmio.is_write,
	      (unsigned long long)mmio_data(run));
	if (protected)
		check_kept_from_kernel_copies(memory, name);
	/* The guest ran: a protected VM's count is now the hyp's alone (still readable). */
	err = set_reg(vcpu, TIMER_REG_COUNT, 1ULL << 42);
	check(err == (protected ? EPERM : 0), "%s: the virtual count set after the guest ran: %s", name,
	      err ? strerror(err) : "done");
	check(get_reg(vcpu, TIMER_REG_COUNT, &value) == 0, "%s: the virtual count read after the guest ran: %#llx",
	      name, (unsigned long long)value);
	ret = ioctl(vcpu, KVM_RUN, 0);
	check(ret == 0 && run->exit_reason == KVM_EXIT_MMIO && run->mmio.phys_addr == MMIO_BASE + 8 &&
		      run->mmio.len == 4 && !run->mmio.is_write,
	      "%s: MMIO load exit: reason %u, address %#llx, len %u, write %u", name, run->exit_reason,
	      (unsigned long long)run->mmio.phys_addr, run->mmio.len, run->mmio.is_write);
	{
		uint32_t read_value = MMIO_READ_VALUE;

		memcpy(run->mmio.data, &read_value, sizeof(read_value));
	}
	ret = ioctl(vcpu, KVM_RUN, 0);
	check(ret == 0 && run->exit_reason == KVM_EXIT_MMIO && run->mmio.phys_addr == MMIO_BASE + 16 &&
		      run->mmio.len == 4 && run->mmio.is_write && mmio_data(run) == MMIO_READ_VALUE,
	      "%s: the loaded value stored back: reason %u, address %#llx, len %u, write %u, data %#llx", name,
	      run->exit_reason, (unsigned long long)run->mmio.phys_addr, run->mmio.len, run->mmio.is_write,
	      (unsigned long long)mmio_data(run));
	setitimer(ITIMER_REAL, &alarm_in, NULL);
	ret = ioctl(vcpu, KVM_RUN, 0);
	err = errno;
	check(ret == -1 && err == EINTR && run->exit_reason == KVM_EXIT_INTR,
	      "%s: a signal during the guest's WFI: %s, reason %u", name, ret == -1 ? strerror(err) : "no error",
	      run->exit_reason);
	ret = ioctl(vcpu, KVM_RUN, 0);
	check(ret == 0 && run->exit_reason == KVM_EXIT_SYSTEM_EVENT &&
		      run->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN && run->system_event.ndata == 1 &&
		      run->system_event.data[0] == 0,
	      "%s: PSCI SYSTEM_OFF: reason %u, type %u, ndata %u", name, run->exit_reason, run->system_event.type,
	      run->system_event.ndata);
	err = get_reg(vcpu, CORE_REG(regs.regs[3]), &value);
	if (protected) {
		check(err == EPERM, "%s: x3 after the run: %s", name, strerror(err));
	} else {
		check(err == 0 && value == MMIO_READ_VALUE, "%s: x3 after the run: %#llx", name,
		      (unsigned long long)value);
		err = get_reg(vcpu, CORE_REG(regs.regs[5]), &value);
		check(err == 0 && value == 0x1234, "%s: x5, set before the first run: %#llx", name,
		      (unsigned long long)value);
	}
	munmap(run, PAGE);
out_vcpu:
	close(vcpu);
	expect_errno(vcpu, KVM_RUN, 0, EBADF, "KVM_RUN on a closed vCPU fd");
out_vm:
	close(vm);
	references = module_references();
	check(references == references_at_start, "%s: the module's references after the VM: %ld, %ld before", name,
	      references, references_at_start);
	/* The last fd gone: the VM torn down, its pages back (a protected VM's zeroed), unpinned. */
	pins_acquired = vmstat("nr_foll_pin_acquired") - pins_acquired;
	pins_released = vmstat("nr_foll_pin_released") - pins_released;
	check(pins_acquired == SLOT_PAGES && pins_released == SLOT_PAGES,
	      "%s: every pin dropped at release: %lu pages pinned, %lu unpinned", name, pins_acquired, pins_released);
	value = 0;
	memcpy(&value, memory, sizeof(uint32_t));
	check(value == (protected ? 0 : guest_code[0]), "%s: the guest's memory after release: first word %#llx", name,
	      (unsigned long long)value);
	munmap(memory, SLOT_PAGES * PAGE);
}

/* Writes value into the file at path; 0 or an errno. */
static int write_file(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	int err = 0;

	if (fd < 0)
		return errno;
	if (write(fd, value, strlen(value)) < 0)
		err = errno;
	close(fd);
	return err;
}

/* The memory cgroup the check makes, and its limit: 3.5 MiB, three VMs' memcache chunks and change. */
#define CHECK_CGROUP "/sys/fs/cgroup/kvm-api-test"
#define CHECK_CGROUP_LIMIT "3670016"
/* VMs the check asks for: far more than fit under the limit. */
#define CHARGED_VMS 16

/*
 * Each VM's memcache donation (1 MiB of pages the hyp takes) and the driver's
 * own structures are charged to the creating process's memory cgroup, as
 * Linux's KVM charges its VMs' memory: a child limited to 3.5 MiB makes
 * three VMs, and the fourth is ENOMEM (a 1 MiB allocation over the limit
 * fails rather than invoking the OOM killer). Unaccounted, all sixteen would
 * be made, and the hyp's memcache would grow without a limit a memory
 * cgroup can set.
 */
static void check_vms_charged_to_the_memory_cgroup(int kvm)
{
	pid_t child;
	int status = -1, err;

	mkdir("/sys/fs/cgroup", 0755);
	if (mount("cgroup2", "/sys/fs/cgroup", "cgroup2", 0, NULL) != 0 && errno != EBUSY) {
		check(0, "memcg: mount cgroup2 at /sys/fs/cgroup: %s", strerror(errno));
		return;
	}
	err = write_file("/sys/fs/cgroup/cgroup.subtree_control", "+memory");
	if (!err && mkdir(CHECK_CGROUP, 0755) != 0 && errno != EEXIST)
		err = errno;
	if (err) {
		check(0, "memcg: a memory cgroup for the check: %s", strerror(err));
		return;
	}
	child = fork();
	if (child == 0) {
		int made = 0, vm_err = 0;

		if (write_file(CHECK_CGROUP "/cgroup.procs", "0") || write_file(CHECK_CGROUP "/memory.max", CHECK_CGROUP_LIMIT))
			_exit(0x7f);
		for (made = 0; made < CHARGED_VMS; made++)
			if (ioctl(kvm, KVM_CREATE_VM, 0) < 0) {
				vm_err = errno;
				break;
			}
		_exit(made | (vm_err == ENOMEM ? 0x40 : 0));
	}
	if (child > 0)
		waitpid(child, &status, 0);
	status = child > 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	check(status != 0x7f && status >= 0 && (status & 0x40) && (status & 0x3f) >= 1 && (status & 0x3f) <= 3,
	      "memcg: VMs made under a memory.max of %s bytes: %d, then ENOMEM: %s", CHECK_CGROUP_LIMIT,
	      status < 0 ? -1 : status & 0x3f, status >= 0 && (status & 0x40) ? "yes" : "no");
	rmdir(CHECK_CGROUP);
}

int main(void)
{
	struct sigaction action = { .sa_handler = on_alarm };
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	int ret, limit;

	setvbuf(stdout, NULL, _IOLBF, 0);
	sigaction(SIGALRM, &action, NULL);
	check(kvm >= 0, "system: open /dev/kvm: %s", kvm >= 0 ? "done" : strerror(errno));
	if (kvm < 0)
		return 1;
	ret = ioctl(kvm, KVM_GET_API_VERSION, 0);
	check(ret == KVM_API_VERSION, "system: KVM_GET_API_VERSION: %d", ret);
	ret = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	check(ret == (int)PAGE, "system: KVM_GET_VCPU_MMAP_SIZE: %d", ret);
	check(ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY) == 1 &&
		      ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_ONE_REG) == 1 &&
		      ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_ARM_PSCI_0_2) == 1 &&
		      ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_IMMEDIATE_EXIT) == 1,
	      "system: KVM_CHECK_EXTENSION: USER_MEMORY, ONE_REG, ARM_PSCI_0_2, IMMEDIATE_EXIT");
	check(ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS) == 8 &&
		      ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS) == 8 &&
		      ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_NR_MEMSLOTS) == 32,
	      "system: KVM_CHECK_EXTENSION: 8 vCPUs, 32 memory slots");
	check(ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_DEVICE_CTRL) == 1 &&
		      ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_IRQCHIP) == 1 &&
		      ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_ARM_IRQ_LINE_LAYOUT_2) == 1,
	      "system: KVM_CHECK_EXTENSION: DEVICE_CTRL, IRQCHIP, ARM_IRQ_LINE_LAYOUT_2");
	check(ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_IRQFD) == 1 &&
		      ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_IOEVENTFD) == 1 &&
		      ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_IOEVENTFD_ANY_LENGTH) == 1,
	      "system: KVM_CHECK_EXTENSION: IRQFD, IOEVENTFD, IOEVENTFD_ANY_LENGTH");
	check(ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_DESTROY_MEMORY_REGION_WORKS) == 1 &&
		      ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_JOIN_MEMORY_REGIONS_WORKS) == 1 &&
		      ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_MP_STATE) == 1,
	      "system: KVM_CHECK_EXTENSION: DESTROY_MEMORY_REGION_WORKS, JOIN_MEMORY_REGIONS_WORKS, MP_STATE (QEMU's)");
	check(ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_SIGNAL_MSI) == 0 &&
		      ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_ARM_PMU_V3) == 0 &&
		      ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_SYNC_MMU) == 0,
	      "system: KVM_CHECK_EXTENSION: no SIGNAL_MSI, PMU, SYNC_MMU");
	limit = ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_ARM_VM_IPA_SIZE);
	check(limit >= 40 && limit <= 48, "system: KVM_CHECK_EXTENSION: IPA size limit %d bits", limit);
	expect_errno(kvm, KVM_CREATE_VM, 1UL << 8, EINVAL, "KVM_CREATE_VM with type bit 8");
	expect_errno(kvm, KVM_CREATE_VM, KVM_VM_TYPE_ARM_IPA_SIZE(31), EINVAL, "KVM_CREATE_VM with a 31-bit IPA");
	expect_errno(kvm, KVM_CREATE_VM, KVM_VM_TYPE_ARM_IPA_SIZE(limit + 1), EINVAL,
		     "KVM_CREATE_VM with an IPA beyond the limit");
	expect_errno(kvm, KVM_CREATE_VCPU, 0, EINVAL, "KVM_CREATE_VCPU on /dev/kvm");
	expect_errno(-1, KVM_GET_API_VERSION, 0, EBADF, "KVM_GET_API_VERSION on fd -1");
	check_vm(kvm, 0, limit);
	check_vm(kvm, 1, limit);
	check_vgic(kvm, 0);
	check_vgic(kvm, 1);
	check_irqfd_close_races(kvm);
	check_vms_charged_to_the_memory_cgroup(kvm);
	close(kvm);
	if (failures)
		printf("kvm-api-test: %d of %d checks FAILED\n", failures, checks);
	else
		printf("kvm-api-test: all %d checks passed\n", checks);
	return failures ? 1 : 0;
}
