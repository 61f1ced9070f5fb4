// SPDX-License-Identifier: MIT
/*
 * /dev/kvm's in-kernel interrupt controller: the vGIC device of
 * KVM_CREATE_DEVICE (KVM_DEV_TYPE_ARM_VGIC_V2 or _V3, the platform's
 * version, as Linux's KVM offers it: Documentation/virt/kvm/devices/
 * arm-vgic.rst and arm-vgic-v3.rst) and KVM_IRQ_LINE. The GIC itself is the
 * hyp's, emulated for every VM: this file only places it where user space
 * asks (the hyp's VM_SET_GIC, at the first KVM_RUN) and drives the SPI lines
 * (VM_SET_SPI_LEVEL), kicking the vCPU an SPI goes to.
 */

#include <linux/anon_inodes.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/module.h>
#include <linux/kvm.h>
#include <linux/of.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "dev_kvm.h"
#include "hyp_calls.h"

#define DISTRIBUTOR_SIZE 0x10000ULL
#define REDISTRIBUTOR_SIZE 0x20000ULL
#define GICV2_CPU_INTERFACE_SIZE 0x2000ULL

bool kvm_vgic_platform_is_v3(void)
{
	struct device_node *node = of_find_compatible_node(NULL, NULL, "arm,gic-v3");
	bool found = node && of_device_is_available(node);

	of_node_put(node);
	return found;
}

static u32 platform_vgic_type(void)
{
	return kvm_vgic_platform_is_v3() ? KVM_DEV_TYPE_ARM_VGIC_V3 : KVM_DEV_TYPE_ARM_VGIC_V2;
}

/* The address attribute's slot in `vgic`, its size and alignment; NULL for one this type lacks. */
static u64 *address_of(struct kvm_vgic *vgic, u64 attr, u64 *size, u64 *alignment)
{
	if (vgic->type == KVM_DEV_TYPE_ARM_VGIC_V3) {
		*alignment = SZ_64K;
		if (attr == KVM_VGIC_V3_ADDR_TYPE_DIST) {
			*size = DISTRIBUTOR_SIZE;
			return &vgic->distributor;
		}
		if (attr == KVM_VGIC_V3_ADDR_TYPE_REDIST) {
			/* Checked against the IPA space again at the first run, with the vCPU count. */
			*size = REDISTRIBUTOR_SIZE;
			return &vgic->second;
		}
		return NULL;
	}
	*alignment = SZ_4K;
	if (attr == KVM_VGIC_V2_ADDR_TYPE_DIST) {
		*size = DISTRIBUTOR_SIZE;
		return &vgic->distributor;
	}
	if (attr == KVM_VGIC_V2_ADDR_TYPE_CPU) {
		*size = GICV2_CPU_INTERFACE_SIZE;
		return &vgic->second;
	}
	return NULL;
}

/* Whether the device has `attr` (KVM_HAS_DEVICE_ATTR): 0 or -ENXIO. */
static long has_attr(struct kvm_vgic *vgic, const struct kvm_device_attr *attr)
{
	u64 size, alignment;

	switch (attr->group) {
	case KVM_DEV_ARM_VGIC_GRP_ADDR:
		return address_of(vgic, attr->attr, &size, &alignment) ? 0 : -ENXIO;
	case KVM_DEV_ARM_VGIC_GRP_NR_IRQS:
		return 0;
	case KVM_DEV_ARM_VGIC_GRP_CTRL:
		return attr->attr == KVM_DEV_ARM_VGIC_CTRL_INIT ? 0 : -ENXIO;
	default:
		/* No register save and restore (GRP_DIST_REGS, ...): the GIC's state is the hyp's. */
		return -ENXIO;
	}
}

static long set_address(struct kvm_vm_state *vm, const struct kvm_device_attr *attr, u64 value)
{
	struct kvm_vgic *vgic = &vm->vgic;
	u64 size, alignment;
	u64 *slot = address_of(vgic, attr->attr, &size, &alignment);

	if (!slot)
		return -ENXIO;
	/* Linux: each address once (EEXIST), before or after CTRL_INIT, until the first run. */
	if (*slot != VGIC_ADDR_UNDEF)
		return -EEXIST;
	if (vm->handle)
		return -EBUSY;
	if (value & (alignment - 1))
		return -EINVAL;
	/* Linux: an address (with its size) beyond the VM's IPA space is E2BIG. */
	if (value + size < value || value + size > (1ULL << vm->ipa_bits))
		return -E2BIG;
	*slot = value;
	return 0;
}

static long set_nr_irqs(struct kvm_vm_state *vm, u64 value)
{
	/* Linux: at least the private interrupts and 32 SPIs, a multiple of 32; the hyp has 288. */
	if (value < 64 || value > VGIC_NR_IRQS || (value & 31))
		return -EINVAL;
	if (vm->vgic.ready || vm->handle || vm->vgic.nr_irqs)
		return -EBUSY;
	vm->vgic.nr_irqs = value;
	return 0;
}

/* `value`: what the attribute's user pointer held (read before the lock). */
static long set_attr(struct kvm_vm_state *vm, const struct kvm_device_attr *attr, u64 value)
{
	switch (attr->group) {
	case KVM_DEV_ARM_VGIC_GRP_ADDR:
		return set_address(vm, attr, value);
	case KVM_DEV_ARM_VGIC_GRP_NR_IRQS:
		return set_nr_irqs(vm, value);
	case KVM_DEV_ARM_VGIC_GRP_CTRL:
		if (attr->attr != KVM_DEV_ARM_VGIC_CTRL_INIT)
			return -ENXIO;
		/*
		 * Linux initialises the distributor here, addresses or not (QEMU
		 * sets them after); KVM_RUN refuses a vGIC still without them.
		 */
		vm->vgic.ready = true;
		return 0;
	default:
		return -ENXIO;
	}
}

/* The attribute's value into `*value` (written to user space after the lock). */
static long get_attr(struct kvm_vm_state *vm, const struct kvm_device_attr *attr, u64 *value)
{
	u64 size, alignment;
	u64 *slot;

	switch (attr->group) {
	case KVM_DEV_ARM_VGIC_GRP_ADDR:
		slot = address_of(&vm->vgic, attr->attr, &size, &alignment);
		if (!slot)
			return -ENXIO;
		*value = *slot;
		return 0;
	case KVM_DEV_ARM_VGIC_GRP_NR_IRQS:
		*value = vm->vgic.nr_irqs ? vm->vgic.nr_irqs : VGIC_NR_IRQS;
		return 0;
	default:
		return -ENXIO;
	}
}

static long vgic_ioctl(struct file *file, unsigned int ioctl, unsigned long arg)
{
	struct kvm_vm_state *vm = file->private_data;
	void __user *user_value;
	struct kvm_device_attr attr;
	u64 value = 0;
	u32 value32;
	long ret;

	if (ioctl != KVM_SET_DEVICE_ATTR && ioctl != KVM_GET_DEVICE_ATTR && ioctl != KVM_HAS_DEVICE_ATTR)
		return -ENOTTY;
	if (copy_from_user(&attr, (void __user *)arg, sizeof(attr)))
		return -EFAULT;
	if (attr.flags)
		return -EINVAL;
	user_value = u64_to_user_ptr(attr.addr);
	/*
	 * User memory only outside vm->lock (as Linux reads it first): a page
	 * that never comes (a FUSE mapping whose server does not answer) must
	 * not hold the VM's lock, which irqfd injections and every vCPU wait for.
	 */
	if (ioctl == KVM_SET_DEVICE_ATTR && attr.group == KVM_DEV_ARM_VGIC_GRP_ADDR &&
	    get_user(value, (u64 __user *)user_value))
		return -EFAULT;
	if (ioctl == KVM_SET_DEVICE_ATTR && attr.group == KVM_DEV_ARM_VGIC_GRP_NR_IRQS) {
		if (get_user(value32, (u32 __user *)user_value))
			return -EFAULT;
		value = value32;
	}
	mutex_lock(&vm->lock);
	if (ioctl == KVM_HAS_DEVICE_ATTR)
		ret = has_attr(&vm->vgic, &attr);
	else if (ioctl == KVM_SET_DEVICE_ATTR)
		ret = set_attr(vm, &attr, value);
	else
		ret = get_attr(vm, &attr, &value);
	mutex_unlock(&vm->lock);
	if (ret || ioctl != KVM_GET_DEVICE_ATTR)
		return ret;
	if (attr.group == KVM_DEV_ARM_VGIC_GRP_NR_IRQS)
		return put_user((u32)value, (u32 __user *)user_value) ? -EFAULT : 0;
	return put_user(value, (u64 __user *)user_value) ? -EFAULT : 0;
}

static int vgic_release(struct inode *inode, struct file *file)
{
	struct kvm_vm_state *vm = file->private_data;

	/* The vGIC stays with the VM, as Linux's does. */
	kref_put(&vm->ref, vm_free);
	return 0;
}

static const struct file_operations vgic_fops = {
	.owner = THIS_MODULE,
	.release = vgic_release,
	.unlocked_ioctl = vgic_ioctl,
	.llseek = noop_llseek,
};

long kvm_vgic_create_device(struct kvm_vm_state *vm, void __user *argp)
{
	struct kvm_create_device __user *user_cd = argp;
	struct kvm_create_device cd;
	bool installed = false;
	long fd;

	if (copy_from_user(&cd, argp, sizeof(cd)))
		return -EFAULT;
	if (cd.flags & ~KVM_CREATE_DEVICE_TEST)
		return -EINVAL;
	/* Only the vGIC of the platform's version (Linux: ENODEV for a type it lacks). */
	if (cd.type != platform_vgic_type())
		return -ENODEV;
	mutex_lock(&vm->lock);
	fd = -EEXIST;
	if (vm->vgic.type)
		goto out;
	/* Linux refuses a vGIC once a vCPU ran. */
	fd = -EBUSY;
	if (vm->handle || vm->dead)
		goto out;
	fd = 0;
	if (cd.flags & KVM_CREATE_DEVICE_TEST)
		goto out;
	kref_get(&vm->ref);
	fd = anon_inode_getfd(cd.type == KVM_DEV_TYPE_ARM_VGIC_V3 ? "kvm-arm-vgic-v3" : "kvm-arm-vgic-v2",
			      &vgic_fops, vm, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		kref_put(&vm->ref, vm_free);
		goto out;
	}
	installed = true;
	vm->vgic.type = cd.type;
	vm->vgic.distributor = VGIC_ADDR_UNDEF;
	vm->vgic.second = VGIC_ADDR_UNDEF;
out:
	mutex_unlock(&vm->lock);
	if (!installed)
		return fd < 0 ? fd : 0;
	/* After the lock (user memory). The fd is installed: on EFAULT user space closes it, as with Linux's. */
	return put_user((u32)fd, &user_cd->fd) ? -EFAULT : 0;
}

long kvm_vgic_check_ready(struct kvm_vm_state *vm)
{
	struct kvm_vgic *vgic = &vm->vgic;

	if (!vgic->type)
		return 0;
	/* Linux: a vGIC without its addresses cannot run (ENXIO from KVM_RUN). */
	if (vgic->distributor == VGIC_ADDR_UNDEF || vgic->second == VGIC_ADDR_UNDEF)
		return -ENXIO;
	if (vgic->type == KVM_DEV_TYPE_ARM_VGIC_V3 &&
	    vgic->second + REDISTRIBUTOR_SIZE * vm->vcpu_count > (1ULL << vm->ipa_bits))
		return -E2BIG;
	return 0;
}

long kvm_vgic_apply(struct kvm_vm_state *vm)
{
	struct kvm_vgic *vgic = &vm->vgic;
	unsigned int spi;
	long status;

	if (!vgic->type)
		return 0;
	status = hyp_call4(CALL_VM_SET_GIC, vm->handle, vgic->distributor, vgic->second, 0);
	if (status != 0)
		return hyp_errno(status);
	vgic->ready = true;
	for_each_set_bit(spi, vgic->spi_level, VGIC_NR_SPIS) {
		status = hyp_call4(CALL_VM_SET_SPI_LEVEL, vm->handle, 0, 32 + spi, 1);
		if (status != 0)
			return hyp_errno(status);
	}
	for_each_set_bit(spi, vgic->spi_edge, VGIC_NR_SPIS) {
		status = hyp_call4(CALL_VCPU_INJECT_IRQ, vm->handle, 0, 32 + spi, 0);
		if (status != 0)
			return hyp_errno(status);
	}
	return 0;
}

/* KVM_IRQ_LINE's irq field (arm64, KVM_CAP_ARM_IRQ_LINE_LAYOUT_2). */
#define IRQ_TYPE_OF(irq) (((irq) >> KVM_ARM_IRQ_TYPE_SHIFT) & KVM_ARM_IRQ_TYPE_MASK)
#define IRQ_VCPU_OF(irq)                                                                            \
	((((irq) >> KVM_ARM_IRQ_VCPU2_SHIFT) & KVM_ARM_IRQ_VCPU2_MASK) * (KVM_ARM_IRQ_VCPU_MASK + 1) + \
	 (((irq) >> KVM_ARM_IRQ_VCPU_SHIFT) & KVM_ARM_IRQ_VCPU_MASK))
#define IRQ_NUM_OF(irq) (((irq) >> KVM_ARM_IRQ_NUM_SHIFT) & KVM_ARM_IRQ_NUM_MASK)

long kvm_vgic_irq_line(struct kvm_vm_state *vm, void __user *argp)
{
	struct kvm_irq_level line;
	unsigned int type, vcpu, intid;
	struct arm_smccc_res res;
	/* The vCPU to kick: the one the interrupt went to. */
	u64 target = U64_MAX;
	long ret = 0;

	if (copy_from_user(&line, argp, sizeof(line)))
		return -EFAULT;
	type = IRQ_TYPE_OF(line.irq);
	vcpu = IRQ_VCPU_OF(line.irq);
	intid = IRQ_NUM_OF(line.irq);
	mutex_lock(&vm->lock);
	if (!vm->vgic.type) {
		/* Linux: without an in-kernel irqchip, SPIs and PPIs are ENXIO; the CPU lines are not offered. */
		ret = type == KVM_ARM_IRQ_TYPE_CPU ? -EINVAL : -ENXIO;
	} else if (type == KVM_ARM_IRQ_TYPE_CPU) {
		ret = -ENXIO;
	} else if (type == KVM_ARM_IRQ_TYPE_SPI) {
		/* Linux: below 32 EINVAL; past the vGIC's lines EINVAL too. */
		if (intid < 32 || intid >= (vm->vgic.nr_irqs ? vm->vgic.nr_irqs : VGIC_NR_IRQS))
			ret = -EINVAL;
		else if (vm->dead)
			ret = -EIO;
		else if (!vm->handle)
			assign_bit(intid - 32, vm->vgic.spi_level, line.level);
		else {
			const u64 a[6] = { vm->handle, 0, intid, line.level ? 1 : 0, 0, 0 };

			res = hyp_call(CALL_VM_SET_SPI_LEVEL, a);
			ret = hyp_errno((long)res.a0);
			if (ret == 0 && line.level)
				target = res.a1;
		}
	} else if (type == KVM_ARM_IRQ_TYPE_PPI) {
		/* A PPI from user space is an edge here: a raised line makes it pending once. */
		if (vcpu >= vm->vcpu_count || intid < 16 || intid >= 32)
			ret = -EINVAL;
		else if (!vm->handle)
			ret = -EBUSY;
		else if (line.level) {
			const u64 a[6] = { vm->handle, vcpu, intid, 0, 0, 0 };

			res = hyp_call(CALL_VCPU_INJECT_IRQ, a);
			ret = hyp_errno((long)res.a0);
			if (ret == 0)
				target = res.a1;
		}
	} else {
		ret = -EINVAL;
	}
	mutex_unlock(&vm->lock);
	/* The vCPU the interrupt goes to takes it now: out of the guest, or out of its wait. */
	if (target < MAX_VCPUS)
		kick_vcpus(vm, BIT_ULL(target));
	return ret;
}
