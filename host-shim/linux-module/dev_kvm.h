/* SPDX-License-Identifier: MIT */
/*
 * /dev/kvm's state, shared by its files: dev_kvm.c (the system, VM and vCPU
 * fds), kvm_vgic.c (the vGIC device and KVM_IRQ_LINE) and kvm_eventfd.c
 * (KVM_IOEVENTFD, KVM_IRQFD).
 */
#ifndef DEV_KVM_H
#define DEV_KVM_H

#include <linux/kref.h>
#include <linux/list.h>
#include <linux/kvm.h>
#include <linux/mutex.h>
#include <linux/types.h>
#include <linux/wait.h>

/* Not in the 6.1 uapi header yet: Linux's pKVM bit of the VM type. */
#ifndef KVM_VM_TYPE_ARM_PROTECTED
#define KVM_VM_TYPE_ARM_PROTECTED (1UL << 31)
#endif

#define KVM_API_VERSION_NUMBER 12
/* The hyp's vCPUs per VM (VM_CREATE). */
#define MAX_VCPUS 8
/* Memory slots per VM (KVM_CAP_NR_MEMSLOTS). */
#define MAX_SLOTS 32
/* Most guest pages one VM may have pinned (512 MiB). */
#define MAX_PINNED_PAGES (1UL << 17)
/* KVM_CREATE_VM's IPA size when the type names none (Linux's KVM_PHYS_SHIFT). */
#define DEFAULT_IPA_BITS 40
#define MIN_IPA_BITS 32
/* KVM_ARM_VCPU_INIT features the hyp has: it always offers PSCI 1.1. */
#define SUPPORTED_FEATURES (BIT(KVM_ARM_VCPU_POWER_OFF) | BIT(KVM_ARM_VCPU_PSCI_0_2))

/* The hyp's register numbers (VCPU_GET_REG, hyp_abi::VcpuReg): x0..x30, then these. */
#define HYP_REG_PC 31
#define HYP_REG_PSTATE 32
#define HYP_REG_SP_EL1 33
#define HYP_REG_SP_EL0 34
#define HYP_REG_ELR_EL1 35
#define HYP_REG_SPSR_EL1 36
#define HYP_REG_FPSR 37
#define HYP_REG_FPCR 38
#define HYP_REG_TIMER_CTL 39
#define HYP_REG_TIMER_CVAL 40
/* The VM's virtual count (one for all its vCPUs). */
#define HYP_REG_TIMER_COUNT 41
/* V0..V31 in halves: 64 + 2n bits 63:0 of Vn, 65 + 2n bits 127:64. */
#define HYP_REG_V0 64
/* One past the last hyp register number (42..63 are none). */
#define HYP_REGS 128
/* KVM's AArch32 SPSRs (abt, und, irq, fiq: kvm_regs.spsr[1..4]), which the hyp's AArch64-only vCPUs lack. */
#define AARCH32_SPSRS 4
/* KVM's reset PSTATE, which VCPU_INIT also gives: EL1h, D, A, I, F masked. */
#define RESET_PSTATE 0x3c5

/* VCPU_RUN's exit reasons (x1 bits 7:0). */
enum hyp_exit {
	EXIT_MMIO = 0,
	EXIT_HYPERCALL = 1,
	EXIT_WFI = 2,
	EXIT_SYSTEM_OFF = 3,
	EXIT_SYSTEM_RESET = 4,
	EXIT_FATAL = 5,
	EXIT_INTERRUPTED = 6,
	EXIT_CPU_ON = 7,
	EXIT_CPU_OFF = 8,
	EXIT_WAKE = 9,
};

struct kvm_slot {
	bool used;
	u64 gpa;
	u64 size;
	u64 uaddr;
	unsigned long npages;
	struct page **pages;
};

struct kvm_vm_state;

/* An address of the vGIC not set yet (Linux's VGIC_ADDR_UNDEF). */
#define VGIC_ADDR_UNDEF (~0ULL)
/* The hyp's INTIDs per VM: SGIs, PPIs and 256 SPIs (GUEST_SPI_LIMIT). */
#define VGIC_NR_IRQS 288
#define VGIC_NR_SPIS (VGIC_NR_IRQS - 32)

/* The vGIC device (KVM_CREATE_DEVICE), as user space set it up. Under vm->lock. */
struct kvm_vgic {
	/* KVM_DEV_TYPE_ARM_VGIC_V2 or _V3; 0 without the device. */
	u32 type;
	/* The distributor, and GICv3's redistributors or GICv2's CPU interface. */
	u64 distributor;
	u64 second;
	/* KVM_DEV_ARM_VGIC_GRP_NR_IRQS as set (0: not set). */
	u32 nr_irqs;
	/* KVM_DEV_ARM_VGIC_CTRL_INIT done (or the first run did it). */
	bool ready;
	/* SPI lines raised before the hyp's VM existed (bit n: INTID 32 + n). */
	DECLARE_BITMAP(spi_level, VGIC_NR_SPIS);
	/* SPI edges (irqfd signals) before the hyp's VM existed. */
	DECLARE_BITMAP(spi_edge, VGIC_NR_SPIS);
};

struct kvm_vcpu_state {
	struct kvm_vm_state *vm;
	unsigned int index;
	/* Serialises this vCPU's ioctls (KVM_RUN holds it while the guest runs). */
	struct mutex lock;
	struct kvm_run *run;
	bool initialised;
	bool power_off;
	/* The core and timer registers until the hyp's VM exists (hyp numbering). */
	u64 regs[HYP_REGS];
	/* kvm_regs.spsr[1..4]: kept here for user space alone (the guest never sees them). */
	u64 spsr_aarch32[AARCH32_SPSRS];
	/* An MMIO read is waiting for the value user space puts in run->mmio.data. */
	bool mmio_read_pending;
	unsigned int mmio_read_len;
	struct task_struct *running;
};

struct kvm_vm_state {
	struct kref ref;
	/* Slots, vCPUs and the hyp VM's creation. */
	struct mutex lock;
	bool is_protected;
	unsigned int ipa_bits;
	/* The hyp's VM handle, 0 until the first KVM_RUN. */
	u64 handle;
	/* Until then the guest's virtual count is the physical count less this (KVM_REG_ARM_TIMER_CNT). */
	u64 count_offset;
	/* Its creation failed: the VM is torn down, its slots released; it answers -EIO. */
	bool dead;
	struct kvm_slot slots[MAX_SLOTS];
	unsigned long pinned;
	/* The creator's memory: only it sets slots, and their pins count against its RLIMIT_MEMLOCK. */
	struct mm_struct *mm;
	struct kvm_vcpu_state *vcpus[MAX_VCPUS];
	unsigned int vcpu_count;
	/* Bumped and woken at a CPU_ON or a wake exit: off or idle vCPUs look again. */
	wait_queue_head_t events_wait;
	atomic_t events;
	struct kvm_vgic vgic;
	/* KVM_IOEVENTFD and KVM_IRQFD registrations (kvm_eventfd.c), under eventfd_lock. */
	struct mutex eventfd_lock;
	struct list_head ioeventfds;
	struct list_head irqfds;
};


/* The errno of a hyp error (docs/abi.md, "The Linux host's /dev/kvm"). */
long hyp_errno(long status);
/* Drops a reference to the VM (each fd holds one); the last frees it. */
void vm_free(struct kref *ref);
/* Kicks the vCPUs named in `targets` (bit n: vCPU n) so that they see their interrupts. */
void kick_vcpus(struct kvm_vm_state *vm, u64 targets);

/* kvm_vgic.c */
long kvm_vgic_create_device(struct kvm_vm_state *vm, void __user *argp);
long kvm_vgic_irq_line(struct kvm_vm_state *vm, void __user *argp);
/* Before the hyp's VM is made: whether the vGIC user space made is complete. */
long kvm_vgic_check_ready(struct kvm_vm_state *vm);
/* Right after the hyp's VM is made: places its GIC, raises the lines set before. */
long kvm_vgic_apply(struct kvm_vm_state *vm);
/* Whether the platform's GIC (and so the hyp's guests') is a GICv3. */
bool kvm_vgic_platform_is_v3(void);

/* kvm_eventfd.c */
/* Module load and unload: the queue where irqfds whose eventfd closed are dropped. */
int kvm_eventfd_module_init(void);
void kvm_eventfd_module_exit(void);
void kvm_eventfd_init(struct kvm_vm_state *vm);
/* At the VM's end: every registration dropped. */
void kvm_eventfd_release(struct kvm_vm_state *vm);
long kvm_ioeventfd(struct kvm_vm_state *vm, void __user *argp);
long kvm_irqfd(struct kvm_vm_state *vm, void __user *argp);
/* An MMIO store of the guest: true if an ioeventfd took it (signalled; no exit to user space). */
bool kvm_ioeventfd_signal(struct kvm_vm_state *vm, u64 addr, u32 len, u64 value);

#endif
