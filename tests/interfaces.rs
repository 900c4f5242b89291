//! Which tc programs an interface gets, by its link-layer type as the kernel of fwlog's network
//! namespace reports it: a tun device (packets start with the IP header) the `_l3` ones, a veth
//! the Ethernet ones, also inside a namespace entered with `nsenter --net`, where /sys is the
//! root namespace's.

use anyhow::Result;
use fwlog_tests::{
    addr,
    tc::{flow_programs, NETLINK_MODE},
    traffic::udp_send,
    Fwlog, TestNet,
};
use nix::sys::signal::Signal;

fn each_gets_its_programs(env: &[(&str, &str)]) -> Result<()> {
    let net = TestNet::new()?;
    let tun = net.add_tun()?;
    let mut fwlog = Fwlog::watch_with_env(&net.host, &[&net.host_if, &tun], env)?;
    let owned = |programs: [(&'static str, &str); 2]| programs.map(|(h, p)| (h, p.to_string()));
    assert_eq!(
        flow_programs(&net.host, &net.host_if)?,
        owned([("egress", "flow_egress"), ("ingress", "flow_ingress")])
    );
    assert_eq!(
        flow_programs(&net.host, &tun)?,
        owned([("egress", "flow_egress_l3"), ("ingress", "flow_ingress_l3")])
    );
    // And the tun's program reads its packets: a datagram sent out of it is a flow on it (read
    // as Ethernet, it would be no IP packet at all).
    udp_send(&net.host, addr("10.203.0.2", 5003), b"x")?;
    assert!(fwlog.stop(Signal::SIGINT)?.success());
    let flow = fwlog.expect_event("the datagram's flow on the tun", |e| {
        e["event_type"] == "flow" && e["dest_port"] == 5003
    })?;
    assert_eq!(flow["in_iface"], tun.as_str());
    assert_eq!(flow["src_ip"], fwlog_tests::netns::TUN_V4);
    Ok(())
}

#[test]
fn a_tun_device_gets_the_programs_for_ip_packets_and_a_veth_the_ethernet_ones() -> Result<()> {
    each_gets_its_programs(&[])
}

#[test]
fn the_same_with_netlink_filters() -> Result<()> {
    each_gets_its_programs(&[NETLINK_MODE])
}
