//! Behind a NAT (a Kubernetes egress gateway, a cloud NAT gateway, an Elastic IP) the static
//! egress IP is not an address of the machine: the policy is enforced for the egress IP while
//! sockets are bound to `DialerConfig::source_ip`. Here the egress IP is a documentation address
//! this machine does not have, and the source is 127.0.0.2.

use switchyard_config::egress::EgressPolicy;
use switchyard_gateway::Error;
use switchyard_gateway::audit::AuditSink;
use switchyard_gateway::dial::{Dialer, DialerConfig, Target};
use switchyard_gateway::identity::Identities;
use switchyard_gateway::policy::{Enforcer, Mode};

fn policy(port: u16) -> EgressPolicy {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("egress.yaml");
    std::fs::write(
        &path,
        format!("destinations:\n  - {{ name: origin, host: 127.0.0.1, ports: [{port}], egress_ips: [203.0.113.10] }}\n"),
    )
    .unwrap();
    let inputs = switchyard_config::load(&switchyard_config::LoadOptions {
        egress: Some(path),
        env: Some(Default::default()),
        ..Default::default()
    })
    .unwrap();
    assert!(inputs.diagnostics.is_empty(), "{:?}", inputs.diagnostics);
    inputs.policy.policy
}

fn dialer(port: u16, source_ip: Option<&str>) -> Dialer {
    let (audit, _events) = AuditSink::channel();
    let enforcer = Enforcer::new(policy(port), "203.0.113.10".parse().unwrap(), Mode::Enforce);
    let config =
        DialerConfig { source_ip: source_ip.map(|ip| ip.parse().unwrap()), ..DialerConfig::default() };
    Dialer::new(enforcer, std::sync::Arc::new(Identities::default()), audit, config)
}

#[tokio::test]
async fn source_ip_binds_the_local_address_while_the_policy_checks_the_egress_ip() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let target = Target::parse("127.0.0.1", port).unwrap();

    // Without a source IP the dialer binds the egress IP, which is not this machine's.
    let err = dialer(port, None).connect(&target).await.unwrap_err();
    assert!(matches!(err, Error::Bind { .. }), "{err}");

    // With one, the policy (which allows only 203.0.113.10) lets it through from 127.0.0.2.
    let dialed = dialer(port, Some("127.0.0.2")).connect(&target).await.unwrap();
    let (_, peer) = listener.accept().await.unwrap();
    assert_eq!(peer.ip().to_string(), "127.0.0.2");
    assert_eq!(dialed.info.local.ip().to_string(), "127.0.0.2");

    // A destination the egress IP is not allowed to reach is still refused before any packet.
    let other = Target::parse("127.0.0.1", port.wrapping_add(1)).unwrap();
    let err = dialer(port, Some("127.0.0.2")).connect(&other).await.unwrap_err();
    assert!(
        !matches!(err, Error::Bind { .. } | Error::Refused { .. }),
        "refused by policy, not by the network: {err}"
    );
}
