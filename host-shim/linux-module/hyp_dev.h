/* SPDX-License-Identifier: MIT */
/*
 * /dev/hyp: the ioctls of the hyp's host driver (dev_hyp.c). Each maps onto
 * one host hypercall of the hyp's ABI (hyp/abi, docs/abi.md): the ioctl
 * number is the call's number (its function ID minus 0xC600_1000), `args`
 * are its x1..x6 and `results` its x0..x3 as the hyp returned them. The
 * driver passes them through, except where a physical address is involved:
 * user space names memory by its own virtual address and the driver pins it.
 * Mirrored in host-shim/linux-vmm/src/dev_hyp.rs.
 */
#ifndef HYP_DEV_H
#define HYP_DEV_H

#include <linux/ioctl.h>
#include <linux/types.h>

struct hyp_call {
	__u64 args[6];
	__u64 results[4];
};

#define HYP_IOCTL_MAGIC 'H'
#define HYP_IOCTL(number) _IOWR(HYP_IOCTL_MAGIC, (number), struct hyp_call)

/* Passed through as they are. */
#define HYP_VERSION HYP_IOCTL(0)
#define HYP_FEATURES HYP_IOCTL(1)
#define HYP_VM_CREATE HYP_IOCTL(6)
#define HYP_VCPU_INIT HYP_IOCTL(8)
#define HYP_VCPU_RUN HYP_IOCTL(9)
#define HYP_VCPU_GET_REG HYP_IOCTL(10)
#define HYP_VCPU_SET_REG HYP_IOCTL(11)
#define HYP_VM_INFO HYP_IOCTL(12)
#define HYP_VM_TEARDOWN HYP_IOCTL(13)
#define HYP_VCPU_INJECT_IRQ HYP_IOCTL(15)
#define HYP_VCPU_SET_IRQ_LINE HYP_IOCTL(16)
/*
 * VM_CREATE makes at most 64 VMs per open file (-ENOSPC after that).
 *
 * VM_MAP: args = handle, user address (page aligned), IPA, pages. The
 * driver's own failures (EINVAL, EFAULT: memory it cannot pin, ENOMEM, EINTR)
 * fail the ioctl; the hyp's refusal is results[0]. The driver
 * pins the pages and gives each to the VM (lent to a non-protected VM,
 * donated to a protected one); they stay pinned until they come back. Only
 * into a VM made through the same file (EINVAL otherwise: the file takes its
 * pages back at close). For a protected VM the memory must be private
 * anonymous (the ioctl fails with EINVAL otherwise, nothing pinned), and its
 * mappings are left out of forks and core dumps and taken from KSM
 * (VM_DONTCOPY, VM_DONTDUMP, VM_DONTEXPAND, not VM_MERGEABLE), as /dev/kvm
 * does: the kernel reading a page the hyp took is an abort it does not
 * survive (checked, flagged and pinned under one hold of the mmap lock). A
 * protected VM_CREATE while hibernation runs fails with EINTR;
 * while a protected VM exists (or the hyp kept pages of one), hibernation is
 * refused (EBUSY).
 */
#define HYP_VM_MAP HYP_IOCTL(7)
/*
 * VM_RECLAIM: args = handle, IPA, pages (any number up to the file's limit).
 * The pages come back (zeroed) and are unpinned. The driver keeps what it
 * gave as runs of physically consecutive pages and reclaims each run's part
 * inside the range with one hypercall per piece of at most 512 pages (a
 * piece the hyp refuses as a range, page by page); a page the hyp keeps
 * stays pinned. results[0] is the first error.
 */
#define HYP_VM_RECLAIM HYP_IOCTL(14)
/*
 * The driver's own accounting (no hypercall): results = pages pinned now,
 * pages ever given to VMs, pages ever returned by the hyp (unpinned), pages
 * of this file's memcache.
 */
#define HYP_ACCOUNTING HYP_IOCTL(0x40)

#endif
