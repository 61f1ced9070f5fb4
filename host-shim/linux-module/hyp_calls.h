/* SPDX-License-Identifier: MIT */
/*
 * The host hypercalls both of the driver's devices make (/dev/hyp in
 * dev_hyp.c, /dev/kvm in dev_kvm.c): function IDs, the hyp's error codes
 * (hyp/abi, docs/abi.md) and the one SMCCC call that makes them.
 */
#ifndef HYP_CALLS_H
#define HYP_CALLS_H

#include <linux/arm-smccc.h>
#include <linux/types.h>

/* Host call function IDs: 0xC600_1000 + number (hyp/abi). */
#define HOST_CALL(number) (0xC6001000u + (number))
#define CALL_VERSION 0
#define CALL_FEATURES 1
#define CALL_DONATE_HYP 4
#define CALL_RECLAIM_HYP 5
#define CALL_VM_CREATE 6
#define CALL_VM_MAP 7
#define CALL_VCPU_INIT 8
#define CALL_VCPU_RUN 9
#define CALL_VCPU_GET_REG 10
#define CALL_VCPU_SET_REG 11
#define CALL_VM_INFO 12
#define CALL_VM_TEARDOWN 13
#define CALL_VM_RECLAIM 14
#define CALL_VCPU_INJECT_IRQ 15
#define CALL_VM_SET_GIC 17
#define CALL_VM_SET_SPI_LEVEL 18

/* hyp_abi::HypError. */
#define HYP_NOT_SUPPORTED (-1L)
#define HYP_INVALID_ARGUMENT (-3L)
#define HYP_NOT_ALIGNED (-4L)
#define HYP_OUT_OF_RANGE (-5L)
#define HYP_NOT_OWNED (-6L)
#define HYP_BUSY (-7L)
#define HYP_NO_MEMORY (-8L)
#define HYP_PERMISSION_DENIED (-9L)
#define HYP_NO_SUCH_VM (-10L)
#define HYP_NO_SUCH_VCPU (-11L)
#define HYP_VCPU_OFF (-12L)

/* Most pages one VM_MAP or VM_RECLAIM names. */
#define HYP_MAP_MAX_PAGES 512

/* Memcache pages donated per client: an open /dev/hyp file or a /dev/kvm VM (memcache.c). */
#define MEMCACHE_ORDER 8
#define MEMCACHE_PAGES (1UL << MEMCACHE_ORDER)

static inline struct arm_smccc_res hyp_call(u32 number, const u64 a[6])
{
	struct arm_smccc_res res;

	arm_smccc_1_1_hvc(HOST_CALL(number), a[0], a[1], a[2], a[3], a[4], a[5], &res);
	return res;
}

static inline long hyp_call4(u32 number, u64 a0, u64 a1, u64 a2, u64 a3)
{
	const u64 a[6] = { a0, a1, a2, a3, 0, 0 };

	return (long)hyp_call(number, a).a0;
}

int kvm_dev_register(void);
void kvm_dev_deregister(void);

/* memcache.c: the pool of pages donated to the hyp's memcache. */
/* A client starts: one more chunk donated (0, or -ENOMEM). */
int memcache_client_start(void);
/* A client ended (its VMs gone): every free chunk beyond one per live client comes back. */
void memcache_client_end(void);
/* At the module's exit: every chunk back. */
void memcache_release_all(void);
unsigned long memcache_donated_pages(void);

#endif
