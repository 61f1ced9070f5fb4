//! The boot matrix: CPU model x GIC version x RAM size x CPU count. Every
//! combination boots the image and must pass the host shim's checks (with four
//! CPUs, the SMP checks too). `scripts/test` runs the eight combinations marked
//! `sample` (each value of each dimension at least twice); `scripts/test
//! --matrix` runs all 48.

use boot_tests::boot;
use std::time::Duration;

/// Generous for TCG on a loaded 2-core machine with four guest CPUs.
const TIMEOUT: Duration = Duration::from_secs(300);

fn boot_combination(cpu: &str, gic: u32, ram: &str, cpus: u32) {
    let machine = format!("virt,virtualization=on,gic-version={gic}");
    let smp = cpus.to_string();
    let boot = boot(&["-M", &machine, "-cpu", cpu, "-m", ram, "-smp", &smp], TIMEOUT);
    let mib = match ram {
        "512M" => 512,
        "2G" => 2048,
        _ => 8192,
    };
    let ram_line = format!("[hyp INFO] RAM: {mib} MiB in 1 bank(s)");
    let gic_line = format!("[hyp INFO] GIC: GICv{gic} distributor");
    let cpus_line = format!("[hyp INFO] CPUs: {cpus} in the device tree");
    let mut markers = vec![ram_line.as_str(), gic_line.as_str(), cpus_line.as_str()];
    markers.push("[host INFO] ok: host shim running at EL1");
    markers.push("[host INFO] ok: a protected guest spinning with interrupts masked is preempted: ");
    if cpus == 4 {
        markers.push("[host INFO] ok: CPU 3 (MPIDR 0x3) started with PSCI CPU_ON (Ok(()))");
        markers.push("all 4 ran at the same time, then CPU_OFF and SYSTEM_OFF");
        markers.push(
            "[host INFO] ok: after the all-CPU stress run the hyp's memory is what it was and its invariants hold",
        );
    } else {
        markers.push("[host INFO] one CPU (or no PSCI): the SMP checks need more");
    }
    markers.push("[host INFO] all host checks passed");
    markers.push("[hyp INFO] host requested PSCI SYSTEM_OFF: powering off");
    boot.assert_markers_in_order(&markers);
    boot.assert_absent(&["FAILED", "PANIC", "ERROR", "WARN"]);
    boot.assert_status(0);
}

macro_rules! matrix {
    ($($kind:ident $name:ident: $cpu:literal, $gic:literal, $ram:literal, $cpus:literal;)*) => {
        $(matrix!(@one $kind $name, $cpu, $gic, $ram, $cpus);)*
    };
    (@one sample $name:ident, $cpu:literal, $gic:literal, $ram:literal, $cpus:literal) => {
        #[test]
        fn $name() {
            boot_combination($cpu, $gic, $ram, $cpus);
        }
    };
    (@one full $name:ident, $cpu:literal, $gic:literal, $ram:literal, $cpus:literal) => {
        #[test]
        #[ignore = "full boot matrix: scripts/test --matrix"]
        fn $name() {
            boot_combination($cpu, $gic, $ram, $cpus);
        }
    };
}

matrix! {
    sample cortex_a53_gicv2_512m_1cpu: "cortex-a53", 2, "512M", 1;
    full cortex_a53_gicv2_512m_4cpu: "cortex-a53", 2, "512M", 4;
    full cortex_a53_gicv2_2g_1cpu: "cortex-a53", 2, "2G", 1;
    full cortex_a53_gicv2_2g_4cpu: "cortex-a53", 2, "2G", 4;
    full cortex_a53_gicv2_8g_1cpu: "cortex-a53", 2, "8G", 1;
    full cortex_a53_gicv2_8g_4cpu: "cortex-a53", 2, "8G", 4;
    full cortex_a53_gicv3_512m_1cpu: "cortex-a53", 3, "512M", 1;
    full cortex_a53_gicv3_512m_4cpu: "cortex-a53", 3, "512M", 4;
    full cortex_a53_gicv3_2g_1cpu: "cortex-a53", 3, "2G", 1;
    full cortex_a53_gicv3_2g_4cpu: "cortex-a53", 3, "2G", 4;
    full cortex_a53_gicv3_8g_1cpu: "cortex-a53", 3, "8G", 1;
    sample cortex_a53_gicv3_8g_4cpu: "cortex-a53", 3, "8G", 4;
    full cortex_a57_gicv2_512m_1cpu: "cortex-a57", 2, "512M", 1;
    full cortex_a57_gicv2_512m_4cpu: "cortex-a57", 2, "512M", 4;
    full cortex_a57_gicv2_2g_1cpu: "cortex-a57", 2, "2G", 1;
    sample cortex_a57_gicv2_2g_4cpu: "cortex-a57", 2, "2G", 4;
    full cortex_a57_gicv2_8g_1cpu: "cortex-a57", 2, "8G", 1;
    full cortex_a57_gicv2_8g_4cpu: "cortex-a57", 2, "8G", 4;
    sample cortex_a57_gicv3_512m_1cpu: "cortex-a57", 3, "512M", 1;
    full cortex_a57_gicv3_512m_4cpu: "cortex-a57", 3, "512M", 4;
    full cortex_a57_gicv3_2g_1cpu: "cortex-a57", 3, "2G", 1;
    full cortex_a57_gicv3_2g_4cpu: "cortex-a57", 3, "2G", 4;
    full cortex_a57_gicv3_8g_1cpu: "cortex-a57", 3, "8G", 1;
    full cortex_a57_gicv3_8g_4cpu: "cortex-a57", 3, "8G", 4;
    full cortex_a72_gicv2_512m_1cpu: "cortex-a72", 2, "512M", 1;
    full cortex_a72_gicv2_512m_4cpu: "cortex-a72", 2, "512M", 4;
    full cortex_a72_gicv2_2g_1cpu: "cortex-a72", 2, "2G", 1;
    full cortex_a72_gicv2_2g_4cpu: "cortex-a72", 2, "2G", 4;
    full cortex_a72_gicv2_8g_1cpu: "cortex-a72", 2, "8G", 1;
    sample cortex_a72_gicv2_8g_4cpu: "cortex-a72", 2, "8G", 4;
    full cortex_a72_gicv3_512m_1cpu: "cortex-a72", 3, "512M", 1;
    full cortex_a72_gicv3_512m_4cpu: "cortex-a72", 3, "512M", 4;
    sample cortex_a72_gicv3_2g_1cpu: "cortex-a72", 3, "2G", 1;
    full cortex_a72_gicv3_2g_4cpu: "cortex-a72", 3, "2G", 4;
    full cortex_a72_gicv3_8g_1cpu: "cortex-a72", 3, "8G", 1;
    full cortex_a72_gicv3_8g_4cpu: "cortex-a72", 3, "8G", 4;
    full max_gicv2_512m_1cpu: "max", 2, "512M", 1;
    sample max_gicv2_512m_4cpu: "max", 2, "512M", 4;
    full max_gicv2_2g_1cpu: "max", 2, "2G", 1;
    full max_gicv2_2g_4cpu: "max", 2, "2G", 4;
    full max_gicv2_8g_1cpu: "max", 2, "8G", 1;
    full max_gicv2_8g_4cpu: "max", 2, "8G", 4;
    full max_gicv3_512m_1cpu: "max", 3, "512M", 1;
    full max_gicv3_512m_4cpu: "max", 3, "512M", 4;
    full max_gicv3_2g_1cpu: "max", 3, "2G", 1;
    full max_gicv3_2g_4cpu: "max", 3, "2G", 4;
    sample max_gicv3_8g_1cpu: "max", 3, "8G", 1;
    full max_gicv3_8g_4cpu: "max", 3, "8G", 4;
}
