use super::*;

fn intids(lrs: &VgicState) -> Vec<u32> {
    lrs.held_intids().collect()
}

/// A GICv3 distributor for `vcpus` vCPUs with group 1 and every interrupt enabled.
fn open(vcpus: usize) -> Distributor {
    let mut d = Distributor::new(GicVersion::V3, vcpus);
    d.set_ctlr(0b10);
    for vcpu in 0..vcpus {
        d.write_enabled(vcpu, 0, u32::MAX, true);
    }
    d.write_enabled(0, 1, u32::MAX, true);
    d.write_enabled(0, 2, u32::MAX, true);
    d
}

#[test]
fn nothing_is_delivered_until_the_guest_enables_it() {
    let mut d = Distributor::new(GicVersion::V3, 1);
    let mut lrs = VgicState::default();
    assert_eq!(d.make_pending(0, 40), Some(Routed::Vcpu(0)));
    d.fill(0, &mut lrs, 4, None);
    assert!(intids(&lrs).is_empty(), "distributor off");
    d.set_ctlr(0b10);
    d.fill(0, &mut lrs, 4, None);
    assert!(intids(&lrs).is_empty() && d.deliverable_mask() == 0, "SPI 40 disabled");
    d.write_enabled(0, 1, 1 << 8, true);
    assert_eq!(d.deliverable_mask(), 1);
    d.fill(0, &mut lrs, 4, None);
    assert_eq!(intids(&lrs), vec![40]);
    assert_eq!(d.pending_word(0, 1), 0, "no longer pending in the distributor");
    let mut v2 = Distributor::new(GicVersion::V2, 1);
    v2.set_ctlr(0b10);
    v2.make_pending(0, 3);
    assert_eq!(v2.deliverable_mask(), 0, "GICv2 interrupts are group 0: bit 0 enables them");
    v2.set_ctlr(0b01);
    assert_eq!(v2.deliverable_mask(), 1, "SGIs are enabled out of reset");
}

#[test]
fn the_most_urgent_go_first_and_the_rest_wait() {
    let mut d = open(1);
    for (intid, priority) in [(50, 0xe0), (51, 0x20), (52, 0xc0), (53, 0x40), (54, 0xa0), (55, 0x60)] {
        d.set_priority(0, intid, priority);
        d.make_pending(0, intid);
    }
    let mut lrs = VgicState::default();
    assert_eq!(d.fill(0, &mut lrs, 4, None), Filled { overflow: true });
    assert_eq!(intids(&lrs), vec![51, 53, 55, 54]);
    assert_eq!(crate::arch::list_registers::lr_priority(lrs.lrs[0]), 0x20);
    // The guest ends two of them; the next two in priority order get in.
    lrs.lrs[0] = 0;
    lrs.lrs[2] = 0;
    assert_eq!(d.fill(0, &mut lrs, 4, None), Filled { overflow: false });
    assert_eq!(intids(&lrs), vec![52, 53, 50, 54]);
}

#[test]
fn an_urgent_interrupt_takes_the_place_of_a_waiting_lesser_one() {
    let mut d = open(1);
    let mut lrs = VgicState::default();
    for intid in 40..44 {
        d.set_priority(0, intid, 0x80);
        d.make_pending(0, intid);
    }
    d.fill(0, &mut lrs, 4, None);
    d.set_priority(0, 60, 0x10);
    d.make_pending(0, 60);
    assert_eq!(d.fill(0, &mut lrs, 4, None), Filled { overflow: true }, "43 waits for a list register");
    assert_eq!(intids(&lrs), vec![40, 41, 42, 60], "43 (last of the least urgent) went back to pending");
    assert_eq!(d.pending_word(0, 1), 1 << 11);
}

#[test]
fn an_active_interrupt_becomes_active_and_pending_in_its_list_register() {
    let mut d = open(1);
    let mut lrs = VgicState::default();
    d.make_pending(0, 40);
    d.fill(0, &mut lrs, 4, None);
    lrs.lrs[0] = lrs.lrs[0] & !(3 << 62) | 2 << 62;
    d.make_pending(0, 40);
    d.fill(0, &mut lrs, 4, None);
    assert_eq!(lrs.lrs[0] >> 62, 3, "pending and active");
    assert_eq!(intids(&lrs), vec![40]);
}

#[test]
fn a_level_spi_is_pending_while_its_line_is_high_and_again_after_the_guest_ends_it() {
    let mut d = open(2);
    let mut lrs = VgicState::default();
    assert_eq!(d.set_spi_level(31, true), None, "a PPI is not an SPI");
    assert_eq!(d.set_spi_level(INTID_LIMIT, true), None, "past the VM's SPIs");
    // Raised and lowered before the guest looked: nothing left.
    assert_eq!(d.set_spi_level(40, true), Some(Routed::Vcpu(0)));
    assert_eq!(d.pending_word(0, 1), 1 << 8);
    d.set_spi_level(40, false);
    assert_eq!(d.pending_word(0, 1), 0, "a level SPI falls with its line");
    // Raised: the guest takes it (active), the line stays high; raising it
    // again changes nothing while a list register holds it.
    d.set_spi_level(40, true);
    d.fill(0, &mut lrs, 4, None);
    assert_eq!(intids(&lrs), vec![40]);
    lrs.lrs[0] = lrs.lrs[0] & !(3 << 62) | 2 << 62;
    d.set_spi_level(40, true);
    assert_eq!(d.pending_word(0, 1), 0, "held: no second edge");
    // The guest ends it with the line still high: pending again.
    lrs.lrs[0] = 0;
    d.fill(0, &mut lrs, 4, None);
    assert_eq!(intids(&lrs), vec![40], "the level brings it back");
    // The device is served: the line falls, the guest ends it, it is gone.
    d.set_spi_level(40, false);
    lrs.lrs[0] = 0;
    d.fill(0, &mut lrs, 4, None);
    assert!(intids(&lrs).is_empty());
    assert_eq!(d.pending_word(0, 1), 0);
    // An edge-configured SPI keeps the edge it latched when the line falls.
    d.set_edge_word(0, 1, 1 << 9);
    d.set_spi_level(41, true);
    d.set_spi_level(41, false);
    assert_eq!(d.pending_word(0, 1), 1 << 9);
    d.set_irouter(42, 7);
    assert_eq!(d.set_spi_level(42, true), Some(Routed::Unrouted), "routed to no vCPU of the VM");
}

#[test]
fn spis_go_where_the_guest_routes_them_and_to_one_vcpu_at_a_time() {
    let mut d = open(2);
    let (mut lrs0, mut lrs1) = (VgicState::default(), VgicState::default());
    d.set_irouter(40, 1);
    assert_eq!(d.make_pending(0, 40), Some(Routed::Vcpu(1)));
    d.fill(0, &mut lrs0, 4, None);
    assert!(intids(&lrs0).is_empty(), "routed to vCPU 1");
    assert_eq!(d.deliverable_mask(), 0b10);
    d.fill(1, &mut lrs1, 4, None);
    assert_eq!(intids(&lrs1), vec![40]);
    // Any vCPU (IRM) now, and pending again while vCPU 1 still holds it.
    d.set_irouter(40, 1 << 31);
    d.make_pending(0, 40);
    d.fill(0, &mut lrs0, 4, None);
    assert!(intids(&lrs0).is_empty(), "held by vCPU 1 until it ends it");
    lrs1.lrs[0] = 0;
    d.release_ended(1, &lrs1);
    d.fill(0, &mut lrs0, 4, None);
    assert_eq!(intids(&lrs0), vec![40]);
    d.set_irouter(41, 5);
    assert_eq!(d.make_pending(0, 41), Some(Routed::Unrouted), "no vCPU 5");
    assert_eq!(d.irouter(41), 5);
    d.set_targets(42, 0b1110);
    assert_eq!(d.targets(0, 42), 0b10, "GICv2 targets: only vCPUs the VM has");
}

#[test]
fn sgis_reach_the_vcpus_named_and_the_timer_is_tied_to_its_ppi() {
    let mut d = open(3);
    d.send_sgi(0b101 | 1 << 9, 5, 1);
    assert_eq!(d.deliverable_mask(), 0b101);
    let mut lrs = VgicState::default();
    d.make_pending_from_hardware(2, 27);
    d.fill(2, &mut lrs, 4, Some(27));
    assert_eq!(intids(&lrs), vec![5, 27]);
    assert!(crate::arch::list_registers::lr_is_hw(lrs.lrs[1]));
    assert!(!crate::arch::list_registers::lr_is_hw(lrs.lrs[0]));
    assert_eq!(d.make_pending(3, 27), None, "no vCPU 3");
    assert_eq!(d.make_pending(0, INTID_LIMIT), None);
}

/// Issue 19 item 5: only the hyp's own timer path ties INTID 27 to the
/// physical PPI. The same INTID injected by the host (`VCPU_INJECT_IRQ`) or
/// set pending by the guest itself (GICD_ISPENDR0) gets a purely virtual list
/// register, whose end the GIC does not pass on to the physical interrupt.
#[test]
fn a_host_injected_timer_interrupt_never_gets_a_hardware_list_register() {
    use crate::arch::list_registers::{lr_intid, lr_is_hw};
    let mut d = open(1);
    let mut lrs = VgicState::default();
    // The host injects 27 (the hyp's VCPU_INJECT_IRQ is `make_pending`).
    assert_eq!(d.make_pending(0, 27), Some(Routed::Vcpu(0)));
    d.fill(0, &mut lrs, 4, Some(27));
    assert_eq!(intids(&lrs), vec![27]);
    assert!(!lr_is_hw(lrs.lrs[0]), "host-injected 27: virtual only ({:#x})", lrs.lrs[0]);
    // The guest ends it; its own set-pending write is virtual too.
    lrs.set(0, 0);
    d.write_pending(0, 0, 1 << 27, true);
    d.fill(0, &mut lrs, 4, Some(27));
    assert!(lr_intid(lrs.lrs[0]) == 27 && !lr_is_hw(lrs.lrs[0]), "guest-set 27: virtual only");
    lrs.set(0, 0);
    // The timer path's 27 is tied to the PPI; a host injection on top of it
    // changes nothing.
    d.make_pending_from_hardware(0, 27);
    d.make_pending(0, 27);
    d.fill(0, &mut lrs, 4, Some(27));
    assert!(lr_intid(lrs.lrs[0]) == 27 && lr_is_hw(lrs.lrs[0]), "timer 27: HW");
    lrs.set(0, 0);
    // A guest's clear-pending write forgets where it came from.
    d.make_pending_from_hardware(0, 27);
    d.write_pending(0, 0, 1 << 27, false);
    d.make_pending(0, 27);
    d.fill(0, &mut lrs, 4, Some(27));
    assert!(!lr_is_hw(lrs.lrs[0]), "cleared by the guest, then injected by the host: virtual only");
    lrs.set(0, 0);
    // Waiting for a list register keeps the mark: four more urgent
    // interrupts fill every slot, 27 from the timer waits, then gets in tied.
    for intid in 40..44 {
        d.set_priority(0, intid, 0x10);
        d.make_pending(0, intid);
    }
    d.set_priority(0, 27, 0x80);
    d.make_pending_from_hardware(0, 27);
    assert_eq!(d.fill(0, &mut lrs, 4, Some(27)), Filled { overflow: true });
    assert_eq!(intids(&lrs), vec![40, 41, 42, 43]);
    lrs.set(2, 0);
    d.fill(0, &mut lrs, 4, Some(27));
    assert!(lr_intid(lrs.lrs[2]) == 27 && lr_is_hw(lrs.lrs[2]), "the timer's 27 after waiting: HW");
    // Not a PPI: nothing.
    d.make_pending_from_hardware(0, 40);
    d.make_pending_from_hardware(0, 3);
    assert_eq!(d.pending_word(0, 1) & 1 << 8, 0);
}

/// A GICv2 distributor for `vcpus` vCPUs with group 0 enabled (SGIs are
/// enabled out of reset).
fn open_v2(vcpus: usize) -> Distributor {
    let mut d = Distributor::new(GicVersion::V2, vcpus);
    d.set_ctlr(1);
    d
}

/// [`open_v2`] with every SPI enabled too, and empty list registers.
fn open_v2_spis(vcpus: usize) -> (Distributor, VgicState) {
    let mut d = open_v2(vcpus);
    d.write_enabled(0, 1, u32::MAX, true);
    (d, VgicState::default())
}

/// (INTID, source) of each list register in use.
fn sgis(lrs: &VgicState) -> Vec<(u32, u32)> {
    use crate::arch::list_registers::{lr_intid, lr_source};
    lrs.lrs[..usize::from(lrs.used)].iter().filter(|&&lr| lr != 0).map(|&lr| (lr_intid(lr), lr_source(lr))).collect()
}

/// GICv2: an SGI from two sources is two interrupts. The list registers hold
/// one source at a time (the same virtual INTID twice is UNPREDICTABLE); the
/// other comes once the guest has ended the first, and nothing is lost or
/// merged across sources. The same source again while its SGI is active makes
/// it active and pending.
#[test]
fn gicv2_sgi_sources_are_delivered_one_after_the_other() {
    use crate::arch::list_registers::{from_v2, to_v2};
    let mut d = open_v2(3);
    let mut lrs = VgicState::default();
    d.send_sgi(0b001, 5, 2);
    d.send_sgi(0b001, 5, 1);
    assert_eq!(d.fill(0, &mut lrs, 4, None), Filled { overflow: false }, "a waiting source is no overflow");
    assert_eq!(sgis(&lrs), vec![(5, 1)], "the lowest source first");
    assert_eq!(d.sgi_sources(0, 5), 0b100, "source 2 still pending");
    // The guest acknowledges it (active); source 1 sends again: active and
    // pending in the same list register. Source 2 still waits.
    lrs.lrs[0] = from_v2(to_v2(lrs.lrs[0]) & !(3 << 28) | 2 << 28);
    d.send_sgi(0b001, 5, 1);
    d.fill(0, &mut lrs, 4, None);
    assert_eq!(sgis(&lrs), vec![(5, 1)]);
    assert_eq!(to_v2(lrs.lrs[0]) >> 28 & 3, 3, "active and pending");
    assert_eq!(d.sgi_sources(0, 5), 0b100);
    // Ended (twice): source 2 goes in.
    lrs.set(0, 0);
    d.fill(0, &mut lrs, 4, None);
    assert_eq!(sgis(&lrs), vec![(5, 2)]);
    assert_eq!(d.pending_word(0, 0) & 1 << 5, 0, "no source left");
    // Another SGI is not held up by SGI 5's wait.
    d.send_sgi(0b001, 5, 0);
    d.send_sgi(0b001, 6, 0);
    d.fill(0, &mut lrs, 4, None);
    assert_eq!(sgis(&lrs), vec![(5, 2), (6, 0)]);
    // The host's injection of an SGI comes from the vCPU itself.
    d.make_pending(1, 3);
    assert_eq!(d.sgi_sources(1, 3), 0b010);
}

/// A GICv2 SGI pushed out of its list register by a more urgent interrupt
/// is pending again from its own source.
#[test]
fn an_evicted_gicv2_sgi_keeps_its_source() {
    let (mut d, mut lrs) = open_v2_spis(4);
    d.set_priority(0, 5, 0xa0);
    d.send_sgi(0b001, 5, 3);
    d.fill(0, &mut lrs, 1, None);
    assert_eq!(sgis(&lrs), vec![(5, 3)]);
    d.set_priority(0, 40, 0x10);
    d.make_pending(0, 40);
    assert_eq!(d.fill(0, &mut lrs, 1, None), Filled { overflow: true });
    assert_eq!(sgis(&lrs), vec![(40, 0)]);
    assert_eq!(d.sgi_sources(0, 5), 0b1000, "pending again from vCPU 3");
    lrs.set(0, 0);
    d.fill(0, &mut lrs, 1, None);
    assert_eq!(sgis(&lrs), vec![(5, 3)]);
}

/// GICv3 SGIs have no source: sends from several vCPUs are one pending SGI.
#[test]
fn gicv3_sgis_have_no_source() {
    let mut d = open(3);
    d.send_sgi(0b001, 5, 1);
    d.send_sgi(0b001, 5, 2);
    let mut lrs = VgicState::default();
    d.fill(0, &mut lrs, 4, None);
    assert_eq!(sgis(&lrs), vec![(5, 0)]);
    assert_eq!(d.pending_word(0, 0) & 1 << 5, 0);
    assert_eq!(d.sgi_sources(0, 5), 0);
}

/// The pending registers see what a vCPU's list registers hold as pending:
/// taken back into the distributor (GICv2 SGIs with their source), active ones
/// left active, and the next fill puts back what is still pending.
#[test]
fn pending_list_registers_go_back_to_the_distributor_for_the_pending_registers() {
    use crate::arch::list_registers::{from_v2, to_v2};
    let (mut d, mut lrs) = open_v2_spis(3);
    d.send_sgi(0b001, 3, 2);
    d.send_sgi(0b001, 4, 1);
    d.make_pending(0, 40);
    d.fill(0, &mut lrs, 4, None);
    assert_eq!(sgis(&lrs), vec![(3, 2), (4, 1), (40, 0)]);
    // The guest acknowledged SGI 4 (active).
    lrs.lrs[1] = from_v2(to_v2(lrs.lrs[1]) & !(3 << 28) | 2 << 28);
    d.unfill_pending(0, &mut lrs);
    assert_eq!(sgis(&lrs), vec![(4, 1)], "only the active one stays");
    assert_eq!((d.sgi_sources(0, 3), d.sgi_sources(0, 4)), (0b100, 0));
    assert_eq!(d.pending_word(0, 1), 1 << 8, "SPI 40 pending in the distributor again");
    // A clear-pending write now reaches SPI 40; SGI 3 comes back from its source.
    d.write_pending(0, 1, 1 << 8, false);
    d.fill(0, &mut lrs, 4, None);
    assert_eq!(sgis(&lrs), vec![(3, 2), (4, 1)]);
    // Another vCPU may now take an SPI given back (nobody holds it).
    d.make_pending(0, 40);
    d.fill(0, &mut lrs, 4, None);
    d.unfill_pending(0, &mut lrs);
    d.set_targets(40, 0b10);
    let mut other = VgicState::default();
    d.fill(1, &mut other, 4, None);
    assert_eq!(sgis(&other), vec![(40, 0)]);
}

#[test]
fn the_active_registers_show_what_the_list_registers_hold_active() {
    use crate::vm::vgic_mmio::Frame;
    let mut d = open(2);
    let mut lrs = VgicState::default();
    d.make_pending(0, 40);
    d.send_sgi(0b01, 3, 0);
    d.make_pending(0, 41);
    d.fill(0, &mut lrs, 4, None);
    assert_eq!(intids(&lrs), vec![3, 40, 41]);
    // The guest acknowledged SGI 3 and SPI 40 (41 stays pending).
    for slot in 0..2 {
        lrs.lrs[slot] = lrs.lrs[slot] & !(3 << 62) | 2 << 62;
    }
    assert_eq!(d.active_word(0, 1), 0, "not seen before the list registers are");
    d.unfill_pending(0, &mut lrs);
    let sgi_frame = |vcpu| Frame::Redistributor { vcpu, sgi: true };
    for (from, frame, offset, expected) in [
        (0, Frame::Distributor, 0x304, 1 << 8),
        (0, Frame::Distributor, 0x384, 1 << 8),
        (1, Frame::Distributor, 0x304, 1 << 8),
        (0, sgi_frame(0), 0x300, 1 << 3),
        (1, sgi_frame(0), 0x380, 1 << 3),
        (1, sgi_frame(1), 0x300, 0),
        (0, Frame::Distributor, 0x300, 0),
    ] {
        assert_eq!(d.mmio(from, frame, offset, 4, None).value, expected, "{from} {frame:?} {offset:#x}");
    }
    assert!(crate::vm::vgic_mmio::reflects_list_registers(Frame::Distributor, 0x304));
    assert!(crate::vm::vgic_mmio::reflects_list_registers(sgi_frame(0), 0x380));
    // The guest ended both: nothing active once the list registers are seen.
    lrs.lrs[0] = 0;
    lrs.lrs[1] = 0;
    d.note_active(0, &lrs);
    assert_eq!((d.active_word(0, 0), d.active_word(1, 1)), (0, 0));
}

#[test]
fn a_timer_interrupt_falls_with_its_line_but_a_latched_one_stays() {
    let mut d = open(1);
    let mut lrs = VgicState::default();
    // From the line, in a list register (tied on GICv3): lowered.
    d.make_pending_from_hardware(0, 27);
    d.fill(0, &mut lrs, 4, Some(27));
    assert_eq!(d.lower_line(0, 27, &mut lrs), Some(true), "only pending: the list register empties");
    assert!(intids(&lrs).is_empty());
    // From the line, not yet delivered (the PPI disabled): the distributor's
    // pending state goes.
    d.write_enabled(0, 0, 1 << 30, false);
    d.make_pending_from_hardware(0, 30);
    assert_eq!(d.pending_word(0, 0) & 1 << 30, 1 << 30);
    assert_eq!(d.lower_line(0, 30, &mut lrs), None);
    assert_eq!(d.pending_word(0, 0) & 1 << 30, 0);
    // Injected by the host (latched): stays, in the distributor and in its
    // list register.
    d.make_pending(0, 30);
    assert_eq!(d.lower_line(0, 30, &mut lrs), None);
    assert_eq!(d.pending_word(0, 0) & 1 << 30, 1 << 30, "latched");
    d.write_enabled(0, 0, 1 << 30, true);
    d.fill(0, &mut lrs, 4, Some(27));
    assert_eq!(d.lower_line(0, 30, &mut lrs), None);
    assert_eq!(intids(&lrs), vec![30], "latched: still presented");
}

#[test]
fn a_tied_timer_interrupt_taken_back_for_a_pending_read_is_tied_again() {
    let mut d = open(1);
    let mut lrs = VgicState::default();
    d.make_pending_from_hardware(0, 27);
    d.fill(0, &mut lrs, 4, Some(27));
    d.unfill_pending(0, &mut lrs);
    assert!(intids(&lrs).is_empty());
    assert_eq!(d.pending_word(0, 0), 1 << 27, "the pending register sees it");
    assert!(d.pending_from_hardware(0, 27), "still from its line");
    d.fill(0, &mut lrs, 4, Some(27));
    assert!(crate::arch::list_registers::lr_is_hw(lrs.lrs[0]), "tied again: the guest's end deactivates the PPI");
    assert_eq!(d.lower_line(0, 27, &mut lrs), Some(true), "and falls with the line");
}

#[test]
fn the_last_words_of_spis_are_delivered_held_ended_and_disabled_like_the_first() {
    let mut d = Distributor::new(GicVersion::V3, 2);
    d.set_ctlr(0b10);
    let (last, word) = (INTID_LIMIT - 1, (INTID_LIMIT / 32 - 1) as usize);
    let mut lrs = VgicState::default();
    assert_eq!(d.make_pending(0, last), Some(Routed::Vcpu(0)));
    assert_eq!(d.deliverable_mask(), 0, "the last SPI is not enabled yet");
    d.write_enabled(0, word, 1 << 31, true);
    d.write_enabled(0, 3, 1 << 5, true);
    assert_eq!(d.deliverable_mask(), 1, "enabled in the last word (and SPI 101's): vCPU 0 may take it");
    d.fill(0, &mut lrs, 4, None);
    assert_eq!(intids(&lrs), vec![last]);
    assert!(d.holds_spis(0));
    // Held by vCPU 0: made pending again, it goes to no other vCPU.
    d.set_irouter(last, 1);
    d.make_pending(0, last);
    let mut lrs1 = VgicState::default();
    d.fill(1, &mut lrs1, 4, None);
    assert!(intids(&lrs1).is_empty(), "held by vCPU 0's list registers");
    // vCPU 0's guest ends it: the hold goes, and vCPU 1 takes the pending one.
    lrs.lrs[0] = 0;
    d.release_ended(0, &lrs);
    assert!(!d.holds_spis(0));
    d.fill(1, &mut lrs1, 4, None);
    assert_eq!(intids(&lrs1), vec![last]);
    // Active there, it is noted in its word; ended, the note goes.
    lrs1.lrs[0] = lrs1.lrs[0] & !(3 << 62) | 2 << 62;
    d.note_active(1, &lrs1);
    assert_eq!(d.active_word(0, word), 1 << 31);
    lrs1.lrs[0] = 0;
    d.note_active(1, &lrs1);
    assert_eq!(d.active_word(0, word), 0);
    assert!(!d.has_noted_active(1));
    // Disabled again: pending, but deliverable nowhere; another enabled word
    // (SPI 101's) still is.
    d.release_ended(1, &lrs1);
    d.make_pending(1, last);
    d.write_enabled(0, word, 1 << 31, false);
    assert_eq!(d.deliverable_mask(), 0);
    d.make_pending(0, 101);
    assert_eq!(d.deliverable_mask(), 1);
}
