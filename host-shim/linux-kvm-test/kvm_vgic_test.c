// SPDX-License-Identifier: MIT
/*
 * kvm-api-test's vGIC checks: KVM_CREATE_DEVICE of the platform's vGIC, its
 * attributes (addresses where kvmtool puts them, the number of interrupts,
 * CTRL_INIT) with Linux's errors for bad ones, and KVM_IRQ_LINE driving an
 * SPI as a level into a guest that opened its GIC at those addresses: the
 * guest takes the interrupt (raised before its first run), again when the
 * line is raised while it waits in WFI, and once more because the line is
 * still high when it ends the interrupt; each time it reports the INTID it
 * acknowledged with an MMIO store. Then KVM_IRQFD and KVM_IOEVENTFD: an
 * irqfd signal makes the SPI pending a fourth time, and the guest's store of
 * its INTID signals an ioeventfd instead of exiting.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <unistd.h>

#include "kvm_test.h"

/* kvmtool's layout: the distributor below 1 GiB, the redistributors (or GICv2's CPU interface) below it. */
#define DISTRIBUTOR 0x3fff0000ULL
#define GICV3_REDISTRIBUTORS (DISTRIBUTOR - 0x20000ULL)
#define GICV2_CPU_INTERFACE 0x3ffd0000ULL
#define SPI 40

/* The guest's parameters, written into its memory at offset 0x10: distributor, second frame, GIC version. */
#define PARAMS_OFFSET 0x10

/*
 * The guest, copied to the start of its memory. It opens its GIC (the
 * distributor with SPI 40 enabled, priority 0xa0; GICv3: the redistributor
 * awake and ICC_PMR/IGRPEN1, GICv2: GICC_PMR/CTLR), unmasks IRQs and waits
 * in WFI. Its IRQ handler (vector table at offset 0x800) acknowledges the
 * interrupt, stores the INTID at MMIO_BASE, ends it, and after the fourth
 * calls PSCI SYSTEM_OFF.
 */
__asm__(".pushsection .rodata.guest_irq, \"a\"\n"
	".balign 4096\n"
	".global guest_irq_code\n"
	"guest_irq_code:\n"
	"	b 1f\n"
	"	.balign 16\n"
	"	.quad 0, 0, 0\n"
	"1:	adr x0, guest_irq_code\n"
	"	add x1, x0, #0x800\n"
	"	msr vbar_el1, x1\n"
	"	isb\n"
	"	ldr x21, [x0, #0x10]\n"
	"	ldr x22, [x0, #0x18]\n"
	"	ldr x23, [x0, #0x20]\n"
	"	mov x20, #0\n"
	"	mov x24, #0x10000000\n"
	"	mov w1, #0xa0\n"
	"	strb w1, [x21, #0x428]\n" /* GICD_IPRIORITYR of INTID 40 */
	"	mov w1, #0x100\n"
	"	str w1, [x21, #0x104]\n" /* GICD_ISENABLER1: INTID 40 */
	"	cmp x23, #3\n"
	"	b.ne 2f\n"
	"	str wzr, [x22, #0x14]\n" /* GICR_WAKER: awake */
	"	mov w1, #0x12\n"
	"	str w1, [x21]\n" /* GICD_CTLR: ARE, EnableGrp1 */
	"	mov x1, #0xff\n"
	"	msr s3_0_c4_c6_0, x1\n" /* ICC_PMR_EL1 */
	"	mov x1, #1\n"
	"	msr s3_0_c12_c12_7, x1\n" /* ICC_IGRPEN1_EL1 */
	"	isb\n"
	"	b 3f\n"
	"2:	mov w1, #1\n"
	"	str w1, [x21]\n" /* GICD_CTLR: Enable */
	"	mov w1, #0xff\n"
	"	str w1, [x22, #4]\n" /* GICC_PMR */
	"	mov w1, #1\n"
	"	str w1, [x22]\n" /* GICC_CTLR */
	"3:	msr daifclr, #2\n"
	"4:	wfi\n"
	"	b 4b\n"
	"	.balign 2048\n"
	"	.skip 0x280\n" /* IRQ, current EL with SP_ELx */
	"	cmp x23, #3\n"
	"	b.ne 5f\n"
	"	mrs x1, s3_0_c12_c12_0\n" /* ICC_IAR1_EL1 */
	"	b 6f\n"
	"5:	ldr w1, [x22, #0xc]\n" /* GICC_IAR */
	"6:	str w1, [x24]\n" /* the INTID, to the host */
	"	cmp x23, #3\n"
	"	b.ne 7f\n"
	"	msr s3_0_c12_c12_1, x1\n" /* ICC_EOIR1_EL1 */
	"	isb\n"
	"	b 8f\n"
	"7:	str w1, [x22, #0x10]\n" /* GICC_EOIR */
	"8:	add x20, x20, #1\n"
	"	cmp x20, #4\n"
	"	b.eq 9f\n"
	"	eret\n"
	"9:	mov x0, #8\n"
	"	movk x0, #0x8400, lsl #16\n" /* PSCI SYSTEM_OFF */
	"	hvc #0\n"
	"	b .\n"
	".global guest_irq_code_end\n"
	"guest_irq_code_end:\n"
	".popsection\n");

extern const uint8_t guest_irq_code[], guest_irq_code_end[];

static int set_attr(int device, uint32_t group, uint64_t attr, const void *value)
{
	struct kvm_device_attr a = { .group = group, .attr = attr, .addr = (uint64_t)(uintptr_t)value };

	return ioctl(device, KVM_SET_DEVICE_ATTR, &a) == 0 ? 0 : errno;
}

static int irq_line(int vm, uint32_t type, uint32_t vcpu, uint32_t intid, uint32_t level)
{
	struct kvm_irq_level line = {
		.irq = type << KVM_ARM_IRQ_TYPE_SHIFT | vcpu << KVM_ARM_IRQ_VCPU_SHIFT | intid,
		.level = level,
	};

	return ioctl(vm, KVM_IRQ_LINE, &line) == 0 ? 0 : errno;
}

/* Runs the vCPU and checks that the guest reported taking SPI 40. */
static void expect_interrupt(int vcpu, struct kvm_run *run, const char *when)
{
	int ret = ioctl(vcpu, KVM_RUN, 0);

	check(ret == 0 && run->exit_reason == KVM_EXIT_MMIO && run->mmio.phys_addr == MMIO_BASE &&
		      run->mmio.is_write && mmio_data(run) == SPI,
	      "%s: the guest took SPI %d %s: %s, reason %u, address %#llx, INTID %llu", scope, SPI, when,
	      ret == 0 ? "ok" : strerror(errno), run->exit_reason, (unsigned long long)run->mmio.phys_addr,
	      (unsigned long long)mmio_data(run));
}

/* The vGIC device's attributes, bad and good; returns 0 when the vGIC is ready to run. */
static int set_up_vgic(int vcpu, int device, int v3)
{
	const uint64_t second = v3 ? GICV3_REDISTRIBUTORS : GICV2_CPU_INTERFACE;
	const uint64_t second_attr = v3 ? KVM_VGIC_V3_ADDR_TYPE_REDIST : KVM_VGIC_V2_ADDR_TYPE_CPU;
	const uint64_t dist_attr = v3 ? KVM_VGIC_V3_ADDR_TYPE_DIST : KVM_VGIC_V2_ADDR_TYPE_DIST;
	struct kvm_device_attr has = { .group = KVM_DEV_ARM_VGIC_GRP_DIST_REGS };
	uint64_t address = DISTRIBUTOR + (v3 ? 0x1000 : 0x800);
	uint32_t nr_irqs = 320;
	int err, ok = 1;

	err = ioctl(device, KVM_HAS_DEVICE_ATTR, &has) == 0 ? 0 : errno;
	check(err == ENXIO, "%s: no register save and restore (HAS_DEVICE_ATTR GRP_DIST_REGS): %s", scope,
	      strerror(err));
	has = (struct kvm_device_attr){ .group = KVM_DEV_ARM_VGIC_GRP_ADDR, .attr = dist_attr };
	check(ioctl(device, KVM_HAS_DEVICE_ATTR, &has) == 0, "%s: HAS_DEVICE_ATTR of the distributor's address",
	      scope);
	err = set_attr(device, KVM_DEV_ARM_VGIC_GRP_ADDR, dist_attr, &address);
	check(err == EINVAL, "%s: unaligned distributor address %#llx: %s", scope, (unsigned long long)address,
	      strerror(err));
	address = 1ULL << 40;
	err = set_attr(device, KVM_DEV_ARM_VGIC_GRP_ADDR, dist_attr, &address);
	check(err == E2BIG, "%s: distributor past the 40-bit IPA space: %s", scope, strerror(err));
	address = DISTRIBUTOR;
	ok &= set_attr(device, KVM_DEV_ARM_VGIC_GRP_ADDR, dist_attr, &address) == 0;
	err = set_attr(device, KVM_DEV_ARM_VGIC_GRP_ADDR, dist_attr, &address);
	check(ok && err == EEXIST, "%s: distributor at %#llx, and not twice: %s", scope, DISTRIBUTOR, strerror(err));
	err = set_attr(device, KVM_DEV_ARM_VGIC_GRP_NR_IRQS, 0, &nr_irqs);
	check(err == EINVAL, "%s: 320 interrupts (the hyp has 288): %s", scope, strerror(err));
	/* Firecracker's count (128 SPIs), past what the hyp had before ABI 0.8. */
	nr_irqs = 160;
	ok &= set_attr(device, KVM_DEV_ARM_VGIC_GRP_NR_IRQS, 0, &nr_irqs) == 0;
	err = set_attr(device, KVM_DEV_ARM_VGIC_GRP_NR_IRQS, 0, &nr_irqs);
	check(ok && err == EBUSY, "%s: 160 interrupts, and not twice: %s", scope, strerror(err));
	/* QEMU's order: CTRL_INIT before the last address, which Linux takes. */
	err = set_attr(device, KVM_DEV_ARM_VGIC_GRP_CTRL, KVM_DEV_ARM_VGIC_CTRL_INIT, NULL);
	check(err == 0, "%s: KVM_DEV_ARM_VGIC_CTRL_INIT before the %s's address: %s", scope,
	      v3 ? "redistributors" : "CPU interface", err ? strerror(err) : "done");
	/* A run without the second frame: ENXIO, and nothing made. */
	expect_errno(vcpu, KVM_RUN, 0, ENXIO, "KVM_RUN with the vGIC's addresses incomplete");
	err = set_attr(device, KVM_DEV_ARM_VGIC_GRP_ADDR, second_attr, &second);
	check(err == 0, "%s: %s at %#llx after CTRL_INIT: %s", scope, v3 ? "redistributors" : "CPU interface",
	      (unsigned long long)second, err ? strerror(err) : "done");
	err = set_attr(device, KVM_DEV_ARM_VGIC_GRP_CTRL, KVM_DEV_ARM_VGIC_CTRL_INIT, NULL);
	check(err == 0, "%s: KVM_DEV_ARM_VGIC_CTRL_INIT again: %s", scope, err ? strerror(err) : "done");
	{
		struct kvm_device_attr get = { .group = KVM_DEV_ARM_VGIC_GRP_ADDR, .attr = dist_attr,
					       .addr = (uint64_t)(uintptr_t)&address };

		/* The count is 32 bits wide: the word after it stays as it was. */
		uint32_t count[2] = { 0, 0x5a5a5a5a };
		struct kvm_device_attr get_count = { .group = KVM_DEV_ARM_VGIC_GRP_NR_IRQS,
						     .addr = (uint64_t)(uintptr_t)count };

		address = 0;
		check(ioctl(device, KVM_GET_DEVICE_ATTR, &get) == 0 && address == DISTRIBUTOR,
		      "%s: GET_DEVICE_ATTR of the distributor: %#llx", scope, (unsigned long long)address);
		check(ioctl(device, KVM_GET_DEVICE_ATTR, &get_count) == 0 && count[0] == 160 && count[1] == 0x5a5a5a5a,
		      "%s: GET_DEVICE_ATTR of the interrupt count: %u (the next word %#x)", scope, count[0], count[1]);
		get.addr = 8;
		check(ioctl(device, KVM_GET_DEVICE_ATTR, &get) == -1 && errno == EFAULT,
		      "%s: GET_DEVICE_ATTR into an unmapped address: %s", scope, strerror(errno));
	}
	return err;
}

static int ioeventfd(int vm, int fd, uint64_t addr, uint32_t len, uint64_t datamatch, uint32_t flags)
{
	struct kvm_ioeventfd args = { .datamatch = datamatch, .addr = addr, .len = len, .fd = fd, .flags = flags };

	return ioctl(vm, KVM_IOEVENTFD, &args) == 0 ? 0 : errno;
}

static int irqfd(int vm, int fd, uint32_t gsi, uint32_t flags)
{
	struct kvm_irqfd args = { .fd = fd, .gsi = gsi, .flags = flags };

	return ioctl(vm, KVM_IRQFD, &args) == 0 ? 0 : errno;
}

/*
 * The guest, its third interrupt ended, waits: an irqfd of GSI 8 (SPI 40)
 * gives it a fourth, whose INTID store an ioeventfd takes (no exit); then it
 * powers off. Linux's errors for bad registrations on the way.
 */
static void check_eventfds(int vm, int vcpu, struct kvm_run *run)
{
	const uint32_t match = KVM_IOEVENTFD_FLAG_DATAMATCH;
	int stored = eventfd(0, EFD_NONBLOCK), signal = eventfd(0, EFD_NONBLOCK);
	uint64_t count = 0;
	int err = 0, ret, i;

	if (stored < 0 || signal < 0) {
		check(0, "%s: eventfd: %s", scope, strerror(errno));
		return;
	}
	check(ioeventfd(vm, stored, MMIO_BASE, 3, SPI, match) == EINVAL, "%s: KVM_IOEVENTFD of 3 bytes refused", scope);
	check(ioeventfd(vm, stored, MMIO_BASE, 0, SPI, match) == EINVAL,
	      "%s: KVM_IOEVENTFD of any length with a value to match refused", scope);
	check(ioeventfd(vm, -1, MMIO_BASE, 4, SPI, match) == EBADF, "%s: KVM_IOEVENTFD of fd -1 refused", scope);
	check(ioeventfd(vm, stored, MMIO_BASE, 4, SPI, 1U << 7) == EINVAL, "%s: KVM_IOEVENTFD with an unknown flag",
	      scope);
	err = ioeventfd(vm, stored, MMIO_BASE, 4, SPI, match);
	check(err == 0, "%s: KVM_IOEVENTFD of the guest's 4-byte store of %d at %#llx: %s", scope, SPI, MMIO_BASE,
	      err ? strerror(err) : "done");
	check(ioeventfd(vm, signal, MMIO_BASE, 4, SPI, match) == EEXIST, "%s: the same store registered twice refused",
	      scope);
	check(ioeventfd(vm, stored, MMIO_BASE, 4, SPI + 1, match | KVM_IOEVENTFD_FLAG_DEASSIGN) == ENOENT,
	      "%s: deassigning a registration that does not exist: ENOENT", scope);
	check(irqfd(vm, signal, 128, 0) == EINVAL, "%s: KVM_IRQFD of GSI 128 (128 SPIs) refused", scope);
	check(irqfd(vm, signal, 8, KVM_IRQFD_FLAG_RESAMPLE) == EINVAL, "%s: KVM_IRQFD with a resample fd refused",
	      scope);
	/* An irqfd goes with its eventfd (Linux drops it at the close): more than a VM may hold at once (64). */
	err = 0;
	for (i = 0; i < 100 && err == 0; i++) {
		int closing = eventfd(0, EFD_NONBLOCK);

		err = closing < 0 ? errno : irqfd(vm, closing, 8, 0);
		if (closing >= 0)
			close(closing);
	}
	check(err == 0, "%s: 100 irqfds of GSI 8 assigned, each eventfd closed after: %d accepted (%s)", scope,
	      err ? i - 1 : i, err ? strerror(err) : "all");
	err = irqfd(vm, signal, 8, 0);
	check(err == 0, "%s: KVM_IRQFD of GSI 8 (SPI %d): %s", scope, SPI, err ? strerror(err) : "done");
	check(irqfd(vm, signal, 9, 0) == EBUSY, "%s: the same eventfd for a second GSI refused", scope);
	count = 1;
	check(write(signal, &count, sizeof(count)) == sizeof(count), "%s: the irqfd signalled", scope);
	ret = ioctl(vcpu, KVM_RUN, 0);
	check(ret == 0 && run->exit_reason == KVM_EXIT_SYSTEM_EVENT &&
		      run->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN,
	      "%s: the guest took the irqfd's interrupt, its store went to the ioeventfd, it powered off: reason %u",
	      scope, run->exit_reason);
	count = 0;
	ret = (int)read(stored, &count, sizeof(count));
	check(ret == sizeof(count) && count == 1, "%s: the ioeventfd was signalled once: %llu", scope,
	      (unsigned long long)count);
	check(ioeventfd(vm, stored, MMIO_BASE, 4, SPI, match | KVM_IOEVENTFD_FLAG_DEASSIGN) == 0 &&
		      irqfd(vm, signal, 8, KVM_IRQFD_FLAG_DEASSIGN) == 0,
	      "%s: both deassigned", scope);
	close(stored);
	close(signal);
}

void check_vgic(int kvm, int protected)
{
	const char *name = protected ? "protected vGIC" : "non-protected vGIC";
	unsigned long type = protected ? KVM_VM_TYPE_ARM_PROTECTED : 0;
	struct itimerval alarm_in = { .it_value = { .tv_usec = 200000 } };
	struct kvm_create_device create = { .type = KVM_DEV_TYPE_ARM_VGIC_V3 };
	struct kvm_vcpu_init init = { .target = KVM_ARM_TARGET_GENERIC_V8 };
	struct kvm_run *run = MAP_FAILED;
	uint64_t *params, address = DISTRIBUTOR;
	int vm, vcpu = -1, device = -1, v3, err, ret;
	uint8_t *memory;

	scope = name;
	vm = ioctl(kvm, KVM_CREATE_VM, type);
	check(vm >= 0, "%s: KVM_CREATE_VM: %s", name, vm >= 0 ? "a VM fd" : strerror(errno));
	if (vm < 0)
		return;
	memory = guest_memory(guest_irq_code, (size_t)(guest_irq_code_end - guest_irq_code));
	if (!memory) {
		close(vm);
		return;
	}
	check(set_slot(vm, 0, GUEST_BASE, SLOT_PAGES * PAGE, memory, 0) == 0, "%s: the guest's memory slot", name);
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0 || ioctl(vcpu, KVM_ARM_VCPU_INIT, &init) != 0 ||
	    set_reg(vcpu, CORE_REG(regs.pc), GUEST_BASE) != 0) {
		check(0, "%s: vCPU 0 made and initialised: %s", name, strerror(errno));
		goto out;
	}
	run = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED) {
		check(0, "%s: mmap of struct kvm_run: %s", name, strerror(errno));
		goto out;
	}

	/* The device: only the platform's vGIC, once. */
	err = irq_line(vm, KVM_ARM_IRQ_TYPE_SPI, 0, SPI, 1);
	check(err == ENXIO, "%s: KVM_IRQ_LINE before the vGIC exists: %s", name, strerror(err));
	create.type = 0xffff;
	expect_errno(vm, KVM_CREATE_DEVICE, (unsigned long)&create, ENODEV, "KVM_CREATE_DEVICE of type 0xffff");
	create.type = KVM_DEV_TYPE_ARM_VGIC_V3;
	v3 = ioctl(vm, KVM_CREATE_DEVICE, &create) == 0;
	if (!v3) {
		create.type = KVM_DEV_TYPE_ARM_VGIC_V2;
		if (ioctl(vm, KVM_CREATE_DEVICE, &create) != 0) {
			check(0, "%s: KVM_CREATE_DEVICE of a vGICv3 or vGICv2: %s", name, strerror(errno));
			goto out;
		}
	}
	device = create.fd;
	check(device >= 0, "%s: KVM_CREATE_DEVICE: a vGICv%d (the platform's)", name, v3 ? 3 : 2);
	create.flags = KVM_CREATE_DEVICE_TEST;
	expect_errno(vm, KVM_CREATE_DEVICE, (unsigned long)&create, EEXIST, "KVM_CREATE_DEVICE (test) of a second vGIC");
	if (set_up_vgic(vcpu, device, v3) != 0)
		goto out;

	/* KVM_IRQ_LINE: Linux's errors, then SPI 40 raised before the first run. */
	err = irq_line(vm, KVM_ARM_IRQ_TYPE_SPI, 0, 31, 1);
	check(err == EINVAL, "%s: KVM_IRQ_LINE of SPI 31: %s", name, strerror(err));
	err = irq_line(vm, KVM_ARM_IRQ_TYPE_SPI, 0, 160, 1);
	check(err == EINVAL, "%s: KVM_IRQ_LINE of INTID 160 (160 interrupts): %s", name, strerror(err));
	err = irq_line(vm, KVM_ARM_IRQ_TYPE_SPI, 0, 159, 1);
	if (err == 0)
		err = irq_line(vm, KVM_ARM_IRQ_TYPE_SPI, 0, 159, 0);
	check(err == 0, "%s: KVM_IRQ_LINE of SPI 159 (the last of 160) raised and lowered: %s", name,
	      err ? strerror(err) : "done");
	err = irq_line(vm, KVM_ARM_IRQ_TYPE_PPI, 3, 20, 1);
	check(err == EINVAL, "%s: KVM_IRQ_LINE of a PPI of vCPU 3 (there is one vCPU): %s", name, strerror(err));
	err = irq_line(vm, KVM_ARM_IRQ_TYPE_CPU, 0, 0, 1);
	check(err == ENXIO, "%s: KVM_IRQ_LINE of the CPU's IRQ line with a vGIC: %s", name, strerror(err));
	err = irq_line(vm, KVM_ARM_IRQ_TYPE_SPI, 0, SPI, 1);
	check(err == 0, "%s: SPI %d raised before the first run: %s", name, SPI, err ? strerror(err) : "done");

	/* Where the guest finds its GIC: written before its memory is the VM's. */
	params = (uint64_t *)(memory + PARAMS_OFFSET);
	params[0] = DISTRIBUTOR;
	params[1] = v3 ? GICV3_REDISTRIBUTORS : GICV2_CPU_INTERFACE;
	params[2] = v3 ? 3 : 2;
	expect_interrupt(vcpu, run, "at its first run");
	err = set_attr(device, KVM_DEV_ARM_VGIC_GRP_ADDR,
		       v3 ? KVM_VGIC_V3_ADDR_TYPE_DIST : KVM_VGIC_V2_ADDR_TYPE_DIST, &address);
	check(err == EEXIST, "%s: the distributor set again after the first run: %s", name, strerror(err));
	check(irq_line(vm, KVM_ARM_IRQ_TYPE_SPI, 0, SPI, 0) == 0, "%s: SPI %d lowered", name, SPI);
	/* The guest ends it and waits in WFI: nothing pending, a signal ends the wait. */
	setitimer(ITIMER_REAL, &alarm_in, NULL);
	ret = ioctl(vcpu, KVM_RUN, 0);
	err = errno;
	check(ret == -1 && err == EINTR, "%s: with the line low the guest waits (a signal ends KVM_RUN: %s)", name,
	      ret == -1 ? strerror(err) : "returned");
	check(irq_line(vm, KVM_ARM_IRQ_TYPE_SPI, 0, SPI, 1) == 0, "%s: SPI %d raised again", name, SPI);
	expect_interrupt(vcpu, run, "after it was raised again");
	/* Left high: when the guest ends it, it is pending again. */
	expect_interrupt(vcpu, run, "again, its line still high when the guest ended it");
	check(irq_line(vm, KVM_ARM_IRQ_TYPE_SPI, 0, SPI, 0) == 0, "%s: SPI %d lowered", name, SPI);
	check_eventfds(vm, vcpu, run);
out:
	if (run != MAP_FAILED)
		munmap(run, PAGE);
	if (device >= 0)
		close(device);
	if (vcpu >= 0)
		close(vcpu);
	close(vm);
	munmap(memory, SLOT_PAGES * PAGE);
}

/*
 * An irqfd's eventfd closed as its VM goes away (the close's drop queued as
 * the VM's release takes the irqfds itself), 32 times, both orders: every
 * step succeeds and the host carries on (a freed irqfd dropped twice, or a
 * drop re-queued on one, would corrupt the host's lists).
 */
void check_irqfd_close_races(int kvm)
{
	const uint64_t distributor = DISTRIBUTOR;
	struct kvm_create_device create = { .type = KVM_DEV_TYPE_ARM_VGIC_V3 };
	struct kvm_vcpu_init init = { .target = KVM_ARM_TARGET_GENERIC_V8 };
	int round, done = 0;

	scope = "irqfd close races";
	for (round = 0; round < 32; round++) {
		int vm = ioctl(kvm, KVM_CREATE_VM, 0), vcpu = -1, device = -1, signal = -1, v3, ok;
		uint64_t second;

		if (vm < 0)
			break;
		vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
		create.type = KVM_DEV_TYPE_ARM_VGIC_V3;
		v3 = ioctl(vm, KVM_CREATE_DEVICE, &create) == 0;
		if (v3) {
			device = (int)create.fd;
		} else {
			create.type = KVM_DEV_TYPE_ARM_VGIC_V2;
			if (ioctl(vm, KVM_CREATE_DEVICE, &create) == 0)
				device = (int)create.fd;
		}
		second = v3 ? GICV3_REDISTRIBUTORS : GICV2_CPU_INTERFACE;
		ok = vcpu >= 0 && ioctl(vcpu, KVM_ARM_VCPU_INIT, &init) == 0 && device >= 0 &&
		     set_attr(device, KVM_DEV_ARM_VGIC_GRP_ADDR,
			      v3 ? KVM_VGIC_V3_ADDR_TYPE_DIST : KVM_VGIC_V2_ADDR_TYPE_DIST, &distributor) == 0 &&
		     set_attr(device, KVM_DEV_ARM_VGIC_GRP_ADDR,
			      v3 ? KVM_VGIC_V3_ADDR_TYPE_REDIST : KVM_VGIC_V2_ADDR_TYPE_CPU, &second) == 0 &&
		     set_attr(device, KVM_DEV_ARM_VGIC_GRP_CTRL, KVM_DEV_ARM_VGIC_CTRL_INIT, NULL) == 0;
		signal = eventfd(0, EFD_NONBLOCK);
		ok = ok && signal >= 0 && irqfd(vm, signal, 8, 0) == 0;
		/* Even rounds: the eventfd first, its drop queued as the VM goes; odd: the VM first. */
		if (round % 2 == 0 && signal >= 0)
			close(signal);
		if (device >= 0)
			close(device);
		if (vcpu >= 0)
			close(vcpu);
		close(vm);
		if (round % 2 == 1 && signal >= 0)
			close(signal);
		if (!ok)
			break;
		done++;
	}
	check(done == 32, "%s: 32 VMs with an irqfd, its eventfd closed before or after the VM: %d done", scope, done);
}
