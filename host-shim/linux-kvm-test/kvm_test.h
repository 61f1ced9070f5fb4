/* SPDX-License-Identifier: MIT */
/*
 * What the files of kvm-api-test share: the guest's layout and the check
 * helpers (defined in kvm_api_test.c).
 */
#ifndef KVM_TEST_H
#define KVM_TEST_H

#include <stddef.h>
#include <stdint.h>
#include <linux/kvm.h>

#ifndef KVM_VM_TYPE_ARM_PROTECTED
#define KVM_VM_TYPE_ARM_PROTECTED (1UL << 31)
#endif

#define PAGE 4096UL
#define SLOT_PAGES 16
#define GUEST_BASE 0x80000000ULL
#define MMIO_BASE 0x10000000ULL
/*
 * KVM_GET_REG_LIST: Linux's core registers (x0..x30, sp, pc, pstate, sp_el1,
 * elr_el1, the five SPSRs, V0..V31, FPSR, FPCR), the PSCI version, the
 * virtual timer's CTL, CNT and CVAL, MPIDR_EL1.
 */
#define REG_LIST_LENGTH (31 + 10 + 32 + 2 + 1 + 3 + 1)
#define REG_MPIDR_EL1 ARM64_SYS_REG(3, 0, 0, 0, 5)
#define RESET_PSTATE 0x3c5ULL


#define CORE_REG(field) core_id(offsetof(struct kvm_regs, field))

extern int checks, failures;
/* What the checks are about now ("system", "protected", ...). */
extern const char *scope;

void check(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void expect_errno(int fd, unsigned long request, unsigned long arg, int expected, const char *what);
uint64_t core_id(unsigned long offset);
int get_reg(int vcpu, uint64_t id, uint64_t *value);
int set_reg(int vcpu, uint64_t id, uint64_t value);
/* KVM_GET_ONE_REG or KVM_SET_ONE_REG of `id` with the value (of the id's size) at `value`; 0 or errno. */
int reg_io(int vcpu, unsigned long request, uint64_t id, void *value);
int set_slot(int vm, uint32_t slot, uint64_t gpa, uint64_t size, void *host, uint32_t flags);
uint64_t mmio_data(const struct kvm_run *run);
/* SLOT_PAGES of fresh memory for a guest, `code` at its start; NULL (a failed check) if there is none. */
uint8_t *guest_memory(const void *code, size_t size);
void on_alarm(int signal);

/* kvm_vgic_test.c: the vGIC device and KVM_IRQ_LINE, for a VM of the type. */
void check_vgic(int kvm, int protected);
void check_irqfd_close_races(int kvm);

#endif
