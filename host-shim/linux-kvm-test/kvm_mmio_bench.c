// SPDX-License-Identifier: MIT
/*
 * kvm-mmio-bench: the cost of a guest MMIO store that exits to the VMM in
 * user space and back, through /dev/kvm, in instructions (issue 23's
 * "user-space exit", measured the same way on the hyp's Linux host and on
 * Linux's own KVM: scripts/bench-kvm-mmio). A one-vCPU guest stores an
 * incrementing counter to an MMIO address in a loop; this VMM runs it,
 * checks every exit (reason, address, size, direction and the stored value:
 * any other exit fails the run), and counts, with perf_event_open on its own
 * thread, the instructions retired at every exception level (EL0, EL1, EL2:
 * the guest's, the host kernel's and the hypervisor's) and at EL2 alone.
 * QEMU's PMU counts instructions only with -icount, exactly then.
 * Prints "kvm-mmio-bench: <type>: N round trips: X instructions each (EL2 Y)"
 * and "BENCH complete", or "BENCH failed: ..." and exits 1.
 *   kvm-mmio-bench [--protected] [--round-trips N]
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <linux/perf_event.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef KVM_VM_TYPE_ARM_PROTECTED
#define KVM_VM_TYPE_ARM_PROTECTED (1UL << 31)
#endif

#define PAGE 4096UL
#define GUEST_BASE 0x80000000ULL
#define MMIO_ADDRESS 0x10000000ULL
#define WARM_UP 1000

/* The guest: w2 counts up from 0, each value stored to MMIO_ADDRESS. */
static const uint32_t guest_code[] = {
	0xd2a20001, /* mov x1, #0x10000000 */
	0x52800002, /* mov w2, #0 */
	0xb9000022, /* loop: str w2, [x1] */
	0x11000442, /* add w2, w2, #1 */
	0x17fffffe, /* b loop */
};

static void fail(const char *fmt, const char *detail)
{
	printf("BENCH failed: ");
	printf(fmt, detail);
	printf("\n");
	exit(1);
}

/* An instruction counter of this thread: every level, or EL2 alone. */
static int instruction_counter(int el2_only)
{
	struct perf_event_attr attr = {
		.type = PERF_TYPE_HARDWARE,
		.size = sizeof(attr),
		.config = PERF_COUNT_HW_INSTRUCTIONS,
		.exclude_user = el2_only,
		.exclude_kernel = el2_only,
		.exclude_hv = 0,
		.exclude_guest = 0,
		.exclude_host = 0,
	};
	int fd = (int)syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);

	if (fd < 0)
		fail("perf_event_open of the instruction counter: %s (QEMU counts instructions only with -icount)",
		     strerror(errno));
	return fd;
}

static uint64_t read_counter(int fd)
{
	uint64_t value = 0;

	if (read(fd, &value, sizeof(value)) != sizeof(value))
		fail("reading the instruction counter: %s", strerror(errno));
	return value;
}

/* One round trip: the guest's store of `expected` exits here, checked. */
static void round_trip(int vcpu, struct kvm_run *run, uint32_t expected)
{
	uint32_t stored = 0;
	char detail[160];

	if (ioctl(vcpu, KVM_RUN, 0) != 0)
		fail("KVM_RUN: %s", strerror(errno));
	memcpy(&stored, run->mmio.data, sizeof(stored));
	if (run->exit_reason != KVM_EXIT_MMIO || run->mmio.phys_addr != MMIO_ADDRESS || run->mmio.len != 4 ||
	    !run->mmio.is_write || stored != expected) {
		snprintf(detail, sizeof(detail), "reason %u, address %#llx, len %u, write %u, value %u (expected %u)",
			 run->exit_reason, (unsigned long long)run->mmio.phys_addr, run->mmio.len,
			 run->mmio.is_write, stored, expected);
		fail("unexpected exit: %s", detail);
	}
}

int main(int argc, char **argv)
{
	struct kvm_vcpu_init init = { .target = KVM_ARM_TARGET_GENERIC_V8 };
	unsigned long round_trips = 10000;
	int protected = 0, kvm, vm, vcpu, all, el2;
	uint64_t all_before, el2_before, all_instructions, el2_instructions;
	struct kvm_userspace_memory_region region;
	struct kvm_one_reg pc;
	uint64_t entry = GUEST_BASE;
	struct kvm_run *run;
	uint32_t value = 0;
	unsigned long i;
	uint8_t *memory;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (i = 1; i < (unsigned long)argc; i++) {
		if (!strcmp(argv[i], "--protected")) {
			protected = 1;
		} else if (!strcmp(argv[i], "--round-trips") && i + 1 < (unsigned long)argc) {
			round_trips = strtoul(argv[++i], NULL, 0);
		} else {
			printf("usage: kvm-mmio-bench [--protected] [--round-trips N]\n"
			       "Counts the instructions of a guest MMIO store that exits to this VMM and back.\n");
			return strcmp(argv[i], "--help") ? 2 : 0;
		}
	}
	if (round_trips == 0)
		fail("%s", "--round-trips must be at least 1");
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		fail("open /dev/kvm: %s", strerror(errno));
	vm = ioctl(kvm, KVM_CREATE_VM, protected ? KVM_VM_TYPE_ARM_PROTECTED : 0UL);
	if (vm < 0)
		fail("KVM_CREATE_VM: %s", strerror(errno));
	memory = mmap(NULL, 16 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (memory == MAP_FAILED)
		fail("mmap of the guest's memory: %s", strerror(errno));
	memcpy(memory, guest_code, sizeof(guest_code));
	region = (struct kvm_userspace_memory_region){
		.slot = 0,
		.guest_phys_addr = GUEST_BASE,
		.memory_size = 16 * PAGE,
		.userspace_addr = (uint64_t)(uintptr_t)memory,
	};
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) != 0)
		fail("KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0)
		fail("KVM_CREATE_VCPU: %s", strerror(errno));
	init.features[0] = 1U << KVM_ARM_VCPU_PSCI_0_2;
	if (ioctl(vcpu, KVM_ARM_VCPU_INIT, &init) != 0)
		fail("KVM_ARM_VCPU_INIT: %s", strerror(errno));
	pc = (struct kvm_one_reg){
		.id = KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE |
		      (offsetof(struct kvm_regs, regs.pc) / sizeof(uint32_t)),
		.addr = (uint64_t)(uintptr_t)&entry,
	};
	if (ioctl(vcpu, KVM_SET_ONE_REG, &pc) != 0)
		fail("setting the guest's pc: %s", strerror(errno));
	run = mmap(NULL, (size_t)ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0), PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED)
		fail("mmap of struct kvm_run: %s", strerror(errno));

	all = instruction_counter(0);
	el2 = instruction_counter(1);
	for (i = 0; i < WARM_UP; i++)
		round_trip(vcpu, run, value++);
	all_before = read_counter(all);
	el2_before = read_counter(el2);
	for (i = 0; i < round_trips; i++)
		round_trip(vcpu, run, value++);
	all_instructions = read_counter(all) - all_before;
	el2_instructions = read_counter(el2) - el2_before;
	printf("kvm-mmio-bench: %s: %lu round trips: %llu instructions each (EL2 %llu)\n",
	       protected ? "protected" : "non-protected", round_trips,
	       (unsigned long long)(all_instructions / round_trips),
	       (unsigned long long)(el2_instructions / round_trips));
	printf("BENCH complete\n");
	return 0;
}
