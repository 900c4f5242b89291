//! What the guests run: the kernel set (the tests whose outcome depends on the kernel or the
//! iptables backend, chosen to fit CI's time), or every test (`--all-tests`), or a filter.
//!
//! Under software emulation each fwlog start costs the verifier's ~450 000 instructions at TCG
//! speed (a minute or more a test on a loaded machine), so the whole suite (~120 tests) takes
//! over 40 minutes a kernel. The host suite already runs every test on the host's kernel; the
//! guests run what another kernel or backend can change.

use anyhow::{bail, Context as _, Result};

use super::{
    backend::Backend,
    plan::{BackendPlan, Selected, TestBinary},
};

/// Where a chosen test runs in a guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// With the guest's first backend only: the iptables backend cannot change its outcome
    /// (tc, the parser, the verifier, cgroup hooks).
    Kernel,
    /// With every backend the guest runs: it goes through the logging rules.
    Backend,
}

/// One test of the kernel set.
pub struct Chosen {
    /// The `[[test]]` binary (tests/NAME.rs).
    pub binary: &'static str,
    /// The test's name in it, exactly.
    pub test: &'static str,
    pub scope: Scope,
}

/// The kernel set. Each entry says why it is here; a name that no binary has fails the run
/// (the set never shrinks silently when a test is renamed).
pub const KERNEL_SET: &[Chosen] = &[
    // The verifier budget: every program (Ethernet and `_l3` tc, verdicts, cgroup hooks) loads,
    // and prints its verified instruction count for the table. The verifier is the kernel.
    Chosen {
        binary: "watch",
        test: "every_program_is_verified_well_inside_the_kernels_limit",
        scope: Scope::Kernel,
    },
    // Verdict lines from the -m bpf logging rules, inbound TCP and UDP: the rules are the backend's.
    Chosen {
        binary: "watch",
        test: "inbound_tcp_and_udp_are_dropped_and_logged",
        scope: Scope::Backend,
    },
    // Outbound: the OUTPUT chain's rules and the process (uid) from the cgroup hooks.
    Chosen {
        binary: "watch",
        test: "outbound_tcp_is_accepted_with_its_owner",
        scope: Scope::Backend,
    },
    // A watch with verdict and flow lines together: the flow starts with its verdict.
    Chosen {
        binary: "flow_table",
        test: "an_accepted_inbound_connection_is_one_flow_that_starts_with_its_verdict",
        scope: Scope::Kernel,
    },
    // Processes: the cgroup hooks' names (kernel helpers differ by version).
    Chosen {
        binary: "attribution",
        test: "outbound_connections_name_their_process",
        scope: Scope::Kernel,
    },
    // install → status → a reader → uninstall, nothing left: pinned programs referenced by the
    // backend's rules, and tc kept without a process (links with TCX, filters without).
    Chosen {
        binary: "installed",
        test: "installed_firewall_works_without_a_reader_and_readers_resume",
        scope: Scope::Backend,
    },
    // tc without TCX (6.1 has none; 6.12 is forced to netlink by the test): clsact + filters
    // that go with the session, survive in install and are found again after SIGKILL.
    Chosen {
        binary: "tc_netlink",
        test: "netlink_filters_count_flows_and_go_with_the_session",
        scope: Scope::Kernel,
    },
    Chosen {
        binary: "tc_netlink",
        test: "install_keeps_netlink_filters_for_readers_and_uninstall_removes_them",
        scope: Scope::Kernel,
    },
    Chosen {
        binary: "tc_netlink",
        test: "after_sigkill_the_next_watch_and_uninstall_remove_the_filters",
        scope: Scope::Kernel,
    },
    // Interfaces: the link type from the kernel (netlink), tun gets the `_l3` programs.
    Chosen {
        binary: "interfaces",
        test: "a_tun_device_gets_the_programs_for_ip_packets_and_a_veth_the_ethernet_ones",
        scope: Scope::Kernel,
    },
    // The parser on hostile and unusual frames: what the verifier of each kernel let through
    // must still read packets right (IPv6 extension headers were 6.1's failure).
    Chosen {
        binary: "flows",
        test: "malformed_packets_are_counted_not_misread",
        scope: Scope::Kernel,
    },
    Chosen {
        binary: "flows",
        test: "ipv6_flow",
        scope: Scope::Kernel,
    },
    Chosen {
        binary: "flows",
        test: "ipv4_options_and_fragments_are_counted_right",
        scope: Scope::Kernel,
    },
    // Hostile frames from scapy: IPv6 extension chains (the bounded loop each verifier must
    // accept), IP lengths that lie, and a forged RST against the TCP sequence check.
    Chosen {
        binary: "hostile_icmp",
        test: "long_ipv6_extension_chains_keep_their_transport_header",
        scope: Scope::Kernel,
    },
    Chosen {
        binary: "hostile_flows",
        test: "lying_ip_lengths_are_malformed_once_and_never_flows",
        scope: Scope::Kernel,
    },
    Chosen {
        binary: "hostile_tcp",
        test: "a_forged_reset_does_not_end_a_live_flow",
        scope: Scope::Kernel,
    },
];

/// What the guests run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// [`KERNEL_SET`].
    KernelSet,
    /// Every test of every binary.
    AllTests,
    /// Every binary with these arguments (a filter, `--exact`, `--skip NAME`).
    Args(Vec<String>),
}

/// Each backend's binaries, their arguments and the tests they will run. `list` gives the tests
/// a binary lists with some arguments (its `--list` on the host). Binaries that would run no
/// test are left out (each start costs seconds in a guest).
pub fn plan(
    binaries: &[TestBinary],
    backends: &[Backend],
    selection: &Selection,
    list: impl Fn(&TestBinary, &[String]) -> Result<Vec<String>>,
) -> Result<Vec<BackendPlan>> {
    let mut plans = Vec::new();
    for (index, backend) in backends.iter().enumerate() {
        let mut selected = Vec::new();
        for binary in binaries {
            let args = match selection {
                Selection::AllTests => Vec::new(),
                Selection::Args(args) => args.clone(),
                Selection::KernelSet => {
                    let tests: Vec<String> = KERNEL_SET
                        .iter()
                        .filter(|chosen| chosen.binary == binary.name)
                        .filter(|chosen| index == 0 || chosen.scope == Scope::Backend)
                        .map(|chosen| chosen.test.to_owned())
                        .collect();
                    if tests.is_empty() {
                        continue;
                    }
                    std::iter::once("--exact".to_owned()).chain(tests).collect()
                }
            };
            let tests = list(binary, &args)?;
            if tests.is_empty() {
                continue;
            }
            selected.push(Selected {
                binary: binary.clone(),
                args,
                tests,
            });
        }
        // The binaries with the most tests first: `jobs` at a time, the long ones do not end
        // the run alone.
        selected.sort_by_key(|one| std::cmp::Reverse(one.tests.len()));
        plans.push(BackendPlan {
            backend: *backend,
            binaries: selected,
        });
    }
    if *selection == Selection::KernelSet {
        check_set(binaries, &list)?;
    }
    Ok(plans)
}

/// Every test [`KERNEL_SET`] names exists in its binary.
fn check_set(
    binaries: &[TestBinary],
    list: &impl Fn(&TestBinary, &[String]) -> Result<Vec<String>>,
) -> Result<()> {
    let mut missing = Vec::new();
    for chosen in KERNEL_SET {
        let Some(binary) = binaries.iter().find(|one| one.name == chosen.binary) else {
            missing.push(format!(
                "{}::{} (no such binary)",
                chosen.binary, chosen.test
            ));
            continue;
        };
        let listed = list(binary, &["--exact".to_owned(), chosen.test.to_owned()])
            .with_context(|| format!("listing {}", chosen.binary))?;
        if !listed.iter().any(|name| name == chosen.test) {
            missing.push(format!("{}::{}", chosen.binary, chosen.test));
        }
    }
    if !missing.is_empty() {
        bail!(
            "the kernel set (xtask/src/kernel_matrix/kernel_set.rs) names tests that do not exist: {}",
            missing.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary(name: &str) -> TestBinary {
        TestBinary {
            name: name.into(),
            path: format!("/t/{name}").into(),
        }
    }

    /// Lists what `--exact NAMES` asks for among every name the set has for the binary, plus
    /// `other` (a test outside the set), as libtest would.
    fn fake_list(binary: &TestBinary, args: &[String]) -> Result<Vec<String>> {
        let all: Vec<String> = KERNEL_SET
            .iter()
            .filter(|chosen| chosen.binary == binary.name)
            .map(|chosen| chosen.test.to_owned())
            .chain(std::iter::once("other".to_owned()))
            .collect();
        Ok(match args.split_first() {
            Some((exact, names)) if exact == "--exact" => all
                .into_iter()
                .filter(|name| names.contains(name))
                .collect(),
            _ => all,
        })
    }

    #[test]
    fn later_backends_run_only_the_tests_that_go_through_the_rules() {
        let mut binaries: Vec<TestBinary> = Vec::new();
        for chosen in KERNEL_SET {
            if !binaries.iter().any(|one| one.name == chosen.binary) {
                binaries.push(binary(chosen.binary));
            }
        }
        binaries.push(binary("output"));
        let plans = plan(
            &binaries,
            &[Backend::Nft, Backend::Legacy],
            &Selection::KernelSet,
            fake_list,
        )
        .expect("the set plans");
        let names = |plan: &BackendPlan| -> Vec<String> {
            plan.binaries
                .iter()
                .map(|selected| selected.binary.name.clone())
                .collect()
        };
        let first = names(&plans[0]);
        assert!(first.contains(&"flows".to_owned()), "{first:?}");
        assert!(
            !first.contains(&"output".to_owned()),
            "output has no set test"
        );
        let second = names(&plans[1]);
        assert!(
            !second.contains(&"flows".to_owned()),
            "flows is kernel-only: {second:?}"
        );
        assert!(second.contains(&"installed".to_owned()), "{second:?}");
        assert_eq!(plans[0].binaries[0].args[0], "--exact");
        assert_eq!(plans[0].binaries[0].tests.len(), 3);
        assert_eq!(plans[1].binaries[0].tests.len(), 2);
        assert!(!plans[0].binaries[0].tests.contains(&"other".to_owned()));
    }

    #[test]
    fn all_tests_runs_every_binary_on_every_backend() {
        let binaries = [binary("watch"), binary("output")];
        let plans = plan(
            &binaries,
            &[Backend::Nft, Backend::Legacy],
            &Selection::AllTests,
            fake_list,
        )
        .expect("plans");
        assert!(plans.iter().all(|plan| plan.binaries.len() == 2));
        assert!(plans[1].binaries[1].args.is_empty());
    }

    #[test]
    fn a_set_test_that_does_not_exist_is_an_error() {
        let binaries = [binary("watch")];
        let error = plan(&binaries, &[Backend::Nft], &Selection::KernelSet, |_, _| {
            Ok(vec!["renamed".to_owned()])
        })
        .expect_err("missing tests fail");
        assert!(
            format!("{error:#}").contains("flows::ipv6_flow (no such binary)"),
            "{error:#}"
        );
    }
}
