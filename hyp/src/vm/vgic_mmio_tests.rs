use super::*;

const D: Frame = Frame::Distributor;

fn rd(vcpu: usize) -> Frame {
    Frame::Redistributor { vcpu, sgi: false }
}

fn sgi(vcpu: usize) -> Frame {
    Frame::Redistributor { vcpu, sgi: true }
}

fn read32(d: &mut Distributor, from: usize, frame: Frame, offset: u64) -> u64 {
    d.mmio(from, frame, offset, 4, None).value
}

#[test]
fn windows_map_to_frames() {
    let v3 = GicVersion::V3;
    assert_eq!(frame_of(v3, 2, &GicLayout::default(), 0x0200_0004), Some((D, 4)));
    assert_eq!(frame_of(v3, 2, &GicLayout::default(), 0x0210_0008), Some((rd(0), 8)));
    assert_eq!(frame_of(v3, 2, &GicLayout::default(), 0x0213_0100), Some((sgi(1), 0x100)));
    assert_eq!(frame_of(v3, 2, &GicLayout::default(), 0x0214_0000), Some((Frame::Unused, 0)), "no vCPU 2");
    assert_eq!(frame_of(v3, 2, &GicLayout::default(), 0x0220_0000), None, "past the window");
    assert_eq!(frame_of(GicVersion::V2, 2, &GicLayout::default(), 0x0210_0008), None, "GICv2 has no redistributors");
    assert_eq!(frame_of(v3, 2, &GicLayout::default(), 0x0900_0000), None);
}

#[test]
fn a_placed_gicv3_layout_has_one_redistributor_per_vcpu_and_nothing_past_them() {
    let v3 = GicVersion::V3;
    // kvmtool's layout: the distributor below 1 GiB, two redistributors below it.
    let layout = GicLayout::placed(v3, 2, 0x3fff_0000, 0x3ffb_0000, 1 << 40).expect("valid");
    assert_eq!(frame_of(v3, 2, &layout, 0x3fff_0004), Some((D, 4)));
    assert_eq!(frame_of(v3, 2, &layout, 0x3ffb_0008), Some((rd(0), 8)));
    assert_eq!(frame_of(v3, 2, &layout, 0x3ffe_0100), Some((sgi(1), 0x100)));
    assert_eq!(frame_of(v3, 2, &layout, 0x3ffa_0000), None, "below the first");
    assert_eq!(frame_of(v3, 2, &layout, 0x0200_0000), None, "the default window is gone");
    assert_eq!(frame_of(v3, 2, &layout, 0x0210_0000), None);
    let after = GicLayout::placed(v3, 2, 0x0800_0000, 0x080a_0000, 1 << 40).expect("valid");
    assert_eq!(frame_of(v3, 2, &after, 0x080e_0000), None, "no third vCPU: not the GIC's");
}

#[test]
fn a_placed_gicv2_layout_moves_the_cpu_interface() {
    let v2 = GicVersion::V2;
    let layout = GicLayout::placed(v2, 1, 0x3fff_0000, 0x3ffd_0000, 1 << 40).expect("valid");
    assert_eq!((layout.distributor, layout.cpu_interface), (0x3fff_0000, 0x3ffd_0000));
    assert_eq!(frame_of(v2, 1, &layout, 0x3fff_0100), Some((D, 0x100)));
    assert_eq!(frame_of(v2, 1, &layout, 0x3ffd_0000), None, "the CPU interface is not a distributor frame");
}

#[test]
fn a_bad_layout_is_refused() {
    let (v2, v3) = (GicVersion::V2, GicVersion::V3);
    let limit = 1u64 << 32;
    assert_eq!(GicLayout::placed(v3, 1, 0x3fff_1000, 0x3ffd_0000, limit), Err(HypError::NotAligned));
    assert_eq!(GicLayout::placed(v3, 1, 0x3fff_0000, 0x3ffd_1000, limit), Err(HypError::NotAligned));
    assert_eq!(GicLayout::placed(v2, 1, 0x3fff_0000, 0x3ffd_0800, limit), Err(HypError::NotAligned));
    assert!(GicLayout::placed(v2, 1, 0x3fff_0000, 0x3ffd_1000, limit).is_ok(), "4 KiB suffices on GICv2");
    assert_eq!(
        GicLayout::placed(v3, 1, limit - 0x1_0000, 0, limit),
        Ok(GicLayout {
            distributor: limit - 0x1_0000,
            redistributors: 0,
            redistributors_size: 0x2_0000,
            cpu_interface: hyp_abi::GUEST_GICV2_CPU_INTERFACE,
        })
    );
    assert_eq!(GicLayout::placed(v3, 1, limit, 0, limit), Err(HypError::OutOfRange));
    assert_eq!(GicLayout::placed(v3, 2, 0, limit - 0x2_0000, limit), Err(HypError::OutOfRange), "two vCPUs");
    assert_eq!(GicLayout::placed(v3, 1, 0, u64::MAX - 0xffff, u64::MAX), Err(HypError::OutOfRange), "wraps");
    assert_eq!(GicLayout::placed(v3, 2, 0x10_0000, 0x0f_0000, limit), Err(HypError::InvalidArgument), "overlap");
    assert_eq!(GicLayout::placed(v2, 1, 0x10_0000, 0x10_f000, limit), Err(HypError::InvalidArgument), "overlap");
    assert!(GicLayout::placed(v3, 2, 0x10_0000, 0x0c_0000, limit).is_ok(), "adjacent");
}

#[test]
fn a_gicv3_guest_finds_its_distributor_and_redistributors() {
    let mut d = Distributor::new(GicVersion::V3, 2);
    assert_eq!(read32(&mut d, 0, D, 0xffe8) >> 4 & 0xf, 3, "PIDR2: GICv3");
    let typer = read32(&mut d, 0, D, 0x4);
    assert_eq!((typer & 0x1f, typer >> 19 & 0x1f, typer >> 5 & 7), (8, 9, 1), "288 INTIDs, 10-bit IDs, 2 CPUs");
    assert_eq!(read32(&mut d, 0, D, 0x0), 1 << 4 | 1 << 6, "ARE and DS, disabled");
    assert!(d.mmio(0, D, 0x0, 4, Some(0x13)).may_deliver);
    assert_eq!(read32(&mut d, 0, D, 0x0), 0x53);
    assert_eq!(d.mmio(0, rd(0), 0x8, 8, None).value, 0, "vCPU 0: affinity 0, not last");
    assert_eq!(d.mmio(1, rd(1), 0x8, 8, None).value, 1 << 32 | 1 << 8 | 1 << 4, "vCPU 1: the last");
    assert_eq!(read32(&mut d, 0, rd(1), 0xc), 1, "upper half alone");
    assert_eq!(read32(&mut d, 0, rd(0), 0xffe8), 0x3b);
    assert_eq!(read32(&mut d, 0, rd(0), 0x14), 0b110, "asleep out of reset");
    d.mmio(0, rd(0), 0x14, 4, Some(0));
    assert_eq!(read32(&mut d, 0, rd(0), 0x14), 0, "awake at once");
}

#[test]
fn gicv3_enables_priorities_and_routes_are_kept() {
    let mut d = Distributor::new(GicVersion::V3, 2);
    // SPIs through GICD; SGIs and PPIs through the redistributor (bank 0 of GICD is RES0).
    assert!(d.mmio(0, D, 0x104, 4, Some(1 << 8 | 1 << 9)).may_deliver);
    d.mmio(0, D, 0x184, 4, Some(1 << 9));
    assert_eq!(read32(&mut d, 0, D, 0x104), 1 << 8);
    d.mmio(0, D, 0x100, 4, Some(u32::MAX.into()));
    assert_eq!(read32(&mut d, 0, D, 0x100), 0);
    d.mmio(0, sgi(1), 0x100, 4, Some(1 << 27));
    assert_eq!(read32(&mut d, 0, sgi(1), 0x100), 0xffff | 1 << 27, "SGIs on out of reset");
    assert_eq!(read32(&mut d, 0, sgi(0), 0x100), 0xffff, "banked per vCPU");
    // Priorities by byte and by word.
    d.mmio(0, D, 0x400 + 41, 1, Some(0x40));
    d.mmio(0, D, 0x400 + 44, 4, Some(0x1122_3344));
    assert_eq!(read32(&mut d, 0, D, 0x400 + 40), 0x4000);
    assert_eq!(d.mmio(0, D, 0x400 + 46, 1, None).value, 0x22);
    d.mmio(0, sgi(0), 0x400 + 27, 1, Some(0x80));
    assert_eq!(d.priority(0, 27), 0x80);
    assert_eq!(d.priority(0, 41), 0x40);
    // Routes: 64-bit and 32-bit halves.
    assert!(d.mmio(0, D, 0x6000 + 8 * 40, 8, Some(1)).may_deliver);
    assert_eq!(d.make_pending(0, 40), Some(crate::vm::vgic_dist::Routed::Vcpu(1)));
    d.mmio(0, D, 0x6000 + 8 * 41, 4, Some(1 << 31));
    assert_eq!(d.mmio(0, D, 0x6000 + 8 * 41, 8, None).value, 1 << 31);
    // Configuration: edge for SPI 42 (ICFGR2, bits 21:20).
    d.mmio(0, D, 0xc08, 4, Some(2 << 20));
    assert_eq!(read32(&mut d, 0, D, 0xc08), 2 << 20);
    assert_eq!(read32(&mut d, 0, sgi(0), 0xc00), 0xaaaa_aaaa, "SGIs are edge-triggered");
    assert_eq!(read32(&mut d, 0, D, 0x084), u32::MAX.into(), "every interrupt group 1");
    // Set- and clear-pending.
    d.mmio(0, D, 0x204, 4, Some(1 << 11));
    assert_eq!(read32(&mut d, 0, D, 0x204), 1 << 8 | 1 << 11);
    d.mmio(0, D, 0x284, 4, Some(1 << 11));
    assert_eq!(read32(&mut d, 0, D, 0x204), 1 << 8);
    // Beyond the VM's INTIDs and unknown registers: read as zero, writes ignored.
    assert_eq!(d.mmio(0, D, 0x124, 4, Some(u32::MAX.into())), Effect::default(), "ISENABLER9: INTIDs 288..");
    assert_eq!(read32(&mut d, 0, D, 0x124), 0);
    assert_eq!(read32(&mut d, 0, D, 0x6000 + 8 * 288), 0);
    // The last SPI (287) is the VM's: enabled, routed, read back.
    d.mmio(0, D, 0x120, 4, Some(1 << 31));
    assert_eq!(read32(&mut d, 0, D, 0x120), 1 << 31, "ISENABLER8 bit 31: SPI 287");
    d.mmio(0, D, 0x6000 + 8 * 287, 8, Some(1));
    assert_eq!(d.mmio(0, D, 0x6000 + 8 * 287, 8, None).value, 1, "IROUTER of SPI 287");
    assert_eq!(read32(&mut d, 0, D, 0x800), 0, "no ITARGETSR with affinity routing");
    assert_eq!(d.mmio(0, D, 0x104, 2, None).value, 0, "halfword: not a register access");
}

#[test]
fn a_gicv2_distributor_banks_private_interrupts_and_sends_sgis() {
    let mut d = Distributor::new(GicVersion::V2, 2);
    assert_eq!(read32(&mut d, 0, D, 0xfe8) >> 4 & 0xf, 2, "PIDR2: GICv2");
    d.mmio(0, D, 0x0, 4, Some(1));
    assert_eq!(read32(&mut d, 0, D, 0x0), 1);
    d.mmio(1, D, 0x100, 4, Some(1 << 27));
    assert_eq!(read32(&mut d, 1, D, 0x100), 0xffff | 1 << 27);
    assert_eq!(read32(&mut d, 0, D, 0x100), 0xffff, "vCPU 0's own bank");
    assert_eq!(read32(&mut d, 1, D, 0x800), 0x0202_0202, "ITARGETSR0: the reader");
    d.mmio(0, D, 0x800 + 40, 1, Some(0b10));
    assert_eq!(d.mmio(0, D, 0x800 + 40, 1, None).value, 0b10);
    d.mmio(0, D, 0x800 + 44, 4, Some(0xff_ff_ff_ff));
    assert_eq!(read32(&mut d, 0, D, 0x800 + 44), 0x0303_0303, "only existing vCPUs");
    assert_eq!(read32(&mut d, 0, D, 0x080), 0, "group 0");
    let effect = d.mmio(1, D, 0xf00, 4, Some(1 << 24 | 3));
    assert!(effect.may_deliver);
    assert_eq!(d.sgi_sources(0, 3), 0b10, "all but the sender: vCPU 0, from vCPU 1");
    assert_eq!(d.sgi_sources(1, 3), 0);
    assert_eq!(read32(&mut d, 0, D, 0xf00), 0, "write-only");
    assert_eq!(read32(&mut d, 0, D, 0x6100), 0, "no IROUTER");
}

/// GICD_SGIR's three filters (and the reserved fourth), and the per-source
/// pending state GICD_SPENDSGIR/CPENDSGIR show and change (GICv2).
#[test]
fn gicv2_sgis_are_pending_per_source_through_sgir_and_the_sgi_pending_registers() {
    let mut d = Distributor::new(GicVersion::V2, 3);
    // Filter 0: the list (vCPUs 0 and 2; bit 7 names no vCPU), from vCPU 1.
    d.mmio(1, D, 0xf00, 4, Some(0b1000_0101 << 16 | 4));
    // Filter 1: all but the sender (vCPU 2).
    d.mmio(2, D, 0xf00, 4, Some(1 << 24 | 4));
    // Filter 2: the sender only; filter 3 is reserved: nothing.
    d.mmio(0, D, 0xf00, 4, Some(2 << 24 | 4));
    d.mmio(0, D, 0xf00, 4, Some(3 << 24 | 0xff << 16 | 6));
    // SPENDSGIR1 (SGIs 4..7) byte 0 is SGI 4: bit n, source vCPU n.
    assert_eq!(read32(&mut d, 0, D, 0xf24), 0b111, "vCPU 0: SGI 4 from 0, 1 and 2; nothing of SGI 6");
    assert_eq!(read32(&mut d, 1, D, 0xf24), 0b100, "vCPU 1: from vCPU 2 only");
    assert_eq!(read32(&mut d, 2, D, 0xf14), 0b010, "vCPU 2 (CPENDSGIR reads the same): from vCPU 1");
    assert_eq!(d.mmio(0, D, 0xf24, 1, None).value, 0b111, "byte access");
    assert_eq!(read32(&mut d, 0, D, 0x200) & 0xffff, 1 << 4, "ISPENDR0: pending from any source");
    // Clear one source, set another (source vCPU 7 and 5 do not exist).
    d.mmio(0, D, 0xf14, 1, Some(0b001));
    d.mmio(1, D, 0xf27, 1, Some(0b1010_0001));
    assert_eq!(d.sgi_sources(0, 4), 0b110);
    assert_eq!(d.sgi_sources(1, 7), 0b001, "only sources the VM has");
    assert_eq!(read32(&mut d, 1, D, 0x200) & 0xffff, 1 << 4 | 1 << 7);
    d.mmio(1, D, 0xf14, 4, Some(0xff << 24 | 0xff));
    assert_eq!(read32(&mut d, 1, D, 0x200) & 0xffff, 0, "all sources cleared: not pending");
    // ISPENDR0/ICPENDR0 cannot set or clear an SGI: those bits are read-only.
    d.mmio(1, D, 0x200, 4, Some(0xffff));
    d.mmio(0, D, 0x280, 4, Some(0xffff));
    assert_eq!(read32(&mut d, 1, D, 0x200) & 0xffff, 0);
    assert_eq!(d.sgi_sources(0, 4), 0b110);
    // GICv3 has no such registers.
    let mut v3 = Distributor::new(GicVersion::V3, 2);
    v3.mmio(0, D, 0xf24, 4, Some(0xff));
    assert_eq!(read32(&mut v3, 0, D, 0xf24), 0);
}
