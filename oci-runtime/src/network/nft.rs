//! The firewall half: one nftables table of ours, `ip oci`, written whole from the recorded
//! state each time it changes, in one `nft` transaction (the `nftables` crate drives nft's
//! JSON API, as netavark does).
//!
//! Regenerating the table rather than adding and deleting single rules makes reconciliation
//! trivial: whatever a killed monitor left behind is gone at the next change, and the rules
//! are always a function of the allocations on disk. Connections already tracked keep their
//! translation (conntrack holds it), so a rewrite does not disturb them.
//!
//! ```text
//! table ip oci
//!   prerouting (nat, dstnat)   fib daddr type local jump ports
//!   output     (nat, -100)     fib daddr type local jump ports
//!   ports                      [ip daddr HOST] tcp dport P dnat to CTR:P'   (one per port)
//!   postrouting (nat, srcnat)  ip saddr NET ip daddr != NET masquerade    (egress)
//!                              oifname BR ip saddr 127.0.0.0/8 masquerade (host loopback)
//!                              oifname BR ct status dnat ip saddr NET masquerade (hairpin)
//!   forward (filter)           iifname BR oifname "oci*" oifname != BR drop (isolation)
//!                              iifname BR oifname != BR drop   (an internal network: and no
//!                              oifname BR iifname != BR drop    masquerade rules for it)
//!   martians (filter, raw)     iifname BR ip daddr 127.0.0.0/8 drop       (host loopback)
//!                              iifname BR ip saddr 127.0.0.0/8 drop
//! ```
//!
//! A second table, `ip6 oci`, holds the same chains for IPv6: the isolation rules for every
//! bridge (a container can send IPv6 to its gateway whether or not its network has IPv6,
//! and the host forwards it once any network has), and, for the networks with IPv6, their
//! masquerade and their containers' published ports (on the host's IPv6 addresses; the
//! host's `::1` cannot be translated out of the loopback). It has no `martians`: nothing
//! routes `::1`.
//!
//! `martians`: every bridge has `route_localnet` (so that the host's loopback reaches the
//! published ports of its containers), which also lets the kernel accept, from the bridge, a
//! frame a container crafted for the gateway's MAC with destination 127.0.0.1, and deliver it
//! to the host's loopback services (CVE-2020-8558; kube-proxy drops the same). Nothing from a
//! container is ever legitimately addressed to or from 127.0.0.0/8: the replies of a published
//! port reached from the host's loopback come addressed to the bridge (masqueraded) and are
//! translated back only after this chain, which runs before connection tracking.

use super::{NetError, Proto};
use nftables::batch::Batch;
use nftables::expr::{
    Expression, Fib, FibFlag, FibResult, Meta, MetaKey, NamedExpression, Payload, PayloadField,
    Prefix, CT,
};
use nftables::schema::{Chain, NfListObject, Rule, Table};
use nftables::stmt::{JumpTarget, Match, Operator, Statement, NAT};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Our table's name.
pub(crate) const TABLE: &str = "oci";

/// A network as the firewall sees it.
pub(crate) struct NetRules {
    pub bridge: String,
    pub subnet: Ipv4Addr,
    pub prefix: u8,
    /// Its IPv6 subnet, when it has one.
    pub ipv6: Option<(Ipv6Addr, u8)>,
    /// No egress: nothing forwarded to or from another interface, no masquerade.
    pub internal: bool,
}

/// A published port as the firewall sees it.
pub(crate) struct PortRule {
    /// The container's short id, the rule's comment (so `nft list ruleset` says whose it is).
    pub owner: String,
    pub host_ip: Option<Ipv4Addr>,
    /// A host address was given (`0.0.0.0` too): not published on IPv6.
    pub ipv4_only: bool,
    pub host_port: u16,
    pub proto: Proto,
    pub ip: Ipv4Addr,
    /// The container's IPv6 address, when its network has IPv6.
    pub ip6: Option<Ipv6Addr>,
    pub port: u16,
}

fn s(v: &str) -> Expression<'static> {
    Expression::String(Cow::Owned(v.to_owned()))
}

fn field(protocol: &'static str, name: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: protocol.into(),
            field: name.into(),
        },
    )))
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn prefix(addr: impl ToString, len: u8) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(s(&addr.to_string())),
        len: u32::from(len),
    }))
}

fn is(left: Expression<'static>, op: Operator, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}

fn chain(
    family: NfFamily,
    name: &str,
    hook: Option<(NfChainType, NfHook, i32)>,
) -> NfListObject<'static> {
    let mut c = Chain {
        family,
        table: TABLE.into(),
        name: Cow::Owned(name.to_owned()),
        ..Chain::default()
    };
    if let Some((t, h, p)) = hook {
        c._type = Some(t);
        c.hook = Some(h);
        c.prio = Some(p);
        c.policy = Some(NfChainPolicy::Accept);
    }
    NfListObject::Chain(c)
}

fn rule(family: NfFamily, chain: &str, expr: Vec<Statement<'static>>) -> NfListObject<'static> {
    commented(family, chain, expr, None)
}

fn commented(
    family: NfFamily,
    chain: &str,
    expr: Vec<Statement<'static>>,
    comment: Option<String>,
) -> NfListObject<'static> {
    NfListObject::Rule(Rule {
        family,
        table: TABLE.into(),
        chain: Cow::Owned(chain.to_owned()),
        expr: Cow::Owned(expr),
        handle: None,
        index: None,
        comment: comment.map(Cow::Owned),
    })
}

fn local_daddr() -> Statement<'static> {
    is(
        Expression::Named(NamedExpression::Fib(Fib {
            result: FibResult::Type,
            flags: [FibFlag::Daddr].into_iter().collect(),
        })),
        Operator::EQ,
        s("local"),
    )
}

/// The batches that replace our tables with ones for `nets` and `ports` (none of either:
/// the tables are removed): `ip oci`, then `ip6 oci`, applied as two transactions so that
/// a kernel without IPv6 filtering or NAT does not stop IPv4's.
pub(crate) fn batches(nets: &[NetRules], ports: &[PortRule]) -> [Batch<'static>; 2] {
    [NfFamily::IP, NfFamily::IP6].map(|family| {
        let mut b = Batch::new();
        table(&mut b, family, nets, ports);
        b
    })
}

/// The `family` table of `nets` and `ports` into `b`.
fn table(b: &mut Batch<'static>, family: NfFamily, nets: &[NetRules], ports: &[PortRule]) {
    let v6 = family == NfFamily::IP6;
    let ip = if v6 { "ip6" } else { "ip" };
    let table = || {
        NfListObject::Table(Table {
            family,
            name: TABLE.into(),
            handle: None,
        })
    };
    // Adding an existing table is a no-op, so the delete never fails: one transaction.
    b.add(table());
    b.delete(table());
    if nets.is_empty() && ports.is_empty() {
        return;
    }
    let rule = |chain: &str, expr| rule(family, chain, expr);
    b.add(table());
    b.add(chain(family, "ports", None));
    b.add(chain(
        family,
        "prerouting",
        Some((NfChainType::NAT, NfHook::Prerouting, -100)),
    ));
    b.add(chain(
        family,
        "output",
        Some((NfChainType::NAT, NfHook::Output, -100)),
    ));
    b.add(chain(
        family,
        "postrouting",
        Some((NfChainType::NAT, NfHook::Postrouting, 100)),
    ));
    b.add(chain(
        family,
        "forward",
        Some((NfChainType::Filter, NfHook::Forward, 0)),
    ));
    if !v6 {
        b.add(chain(
            family,
            "martians",
            Some((NfChainType::Filter, NfHook::Prerouting, -300)),
        ));
    }
    for c in ["prerouting", "output"] {
        b.add(rule(
            c,
            vec![
                local_daddr(),
                Statement::Jump(JumpTarget {
                    target: "ports".into(),
                }),
            ],
        ));
    }
    for p in ports {
        let to = match (v6, p.ip6) {
            (false, _) => p.ip.to_string(),
            // On the host's IPv6 addresses: a port published on an IPv4 one is not.
            (true, Some(a)) if p.host_ip.is_none() && !p.ipv4_only => a.to_string(),
            (true, _) => continue,
        };
        let mut e = Vec::new();
        if let Some(h) = p.host_ip {
            e.push(is(field(ip, "daddr"), Operator::EQ, s(&h.to_string())));
        }
        e.push(is(
            field(p.proto.name(), "dport"),
            Operator::EQ,
            Expression::Number(u32::from(p.host_port)),
        ));
        e.push(Statement::DNAT(Some(NAT {
            addr: Some(s(&to)),
            family: None,
            port: Some(Expression::Number(u32::from(p.port))),
            flags: None,
        })));
        b.add(commented(family, "ports", e, Some(p.owner.clone())));
    }
    for n in nets {
        if v6 {
            match n.ipv6 {
                // A network without IPv6: nothing of its bridge is routed in IPv6 (a
                // container can still send IPv6 to its gateway, which the host forwards
                // once any network has IPv6).
                None => {
                    for end in [MetaKey::Iifname, MetaKey::Oifname] {
                        b.add(rule(
                            "forward",
                            vec![
                                is(meta(end), Operator::EQ, s(&n.bridge)),
                                Statement::Drop(None),
                            ],
                        ));
                    }
                }
                // IPv6 has no reverse-path filter: only the network's own addresses leave
                // its bridge.
                Some((a, len)) => b.add(rule(
                    "forward",
                    vec![
                        is(meta(MetaKey::Iifname), Operator::EQ, s(&n.bridge)),
                        is(field("ip6", "saddr"), Operator::NEQ, prefix(a, len)),
                        Statement::Drop(None),
                    ],
                )),
            }
        }
        if n.internal {
            for (inside, outside) in [
                (MetaKey::Iifname, MetaKey::Oifname),
                (MetaKey::Oifname, MetaKey::Iifname),
            ] {
                b.add(rule(
                    "forward",
                    vec![
                        is(meta(inside), Operator::EQ, s(&n.bridge)),
                        is(meta(outside), Operator::NEQ, s(&n.bridge)),
                        Statement::Drop(None),
                    ],
                ));
            }
        } else if !v6 {
            egress(b, family, (n.subnet.to_string(), n.prefix), &n.bridge);
        } else if let Some((a, len)) = n.ipv6 {
            egress(b, family, (a.to_string(), len), &n.bridge);
        }
        b.add(rule(
            "forward",
            vec![
                is(meta(MetaKey::Iifname), Operator::EQ, s(&n.bridge)),
                is(meta(MetaKey::Oifname), Operator::EQ, s("oci*")),
                is(meta(MetaKey::Oifname), Operator::NEQ, s(&n.bridge)),
                Statement::Drop(None),
            ],
        ));
        if v6 {
            continue;
        }
        for end in ["daddr", "saddr"] {
            b.add(rule(
                "martians",
                vec![
                    is(meta(MetaKey::Iifname), Operator::EQ, s(&n.bridge)),
                    is(
                        field("ip", end),
                        Operator::EQ,
                        prefix(Ipv4Addr::new(127, 0, 0, 0), 8),
                    ),
                    Statement::Drop(None),
                ],
            ));
        }
    }
}

/// A network's egress in `family`'s table: masquerade out of its subnet `(address,
/// prefix)`, from the host's loopback to its published ports (IPv4), and hairpin (a
/// container reaching a port published by its network).
fn egress(b: &mut Batch<'static>, family: NfFamily, subnet: (String, u8), bridge: &str) {
    let ip = if family == NfFamily::IP6 { "ip6" } else { "ip" };
    let net = || prefix(&subnet.0, subnet.1);
    b.add(rule(
        family,
        "postrouting",
        vec![
            is(field(ip, "saddr"), Operator::EQ, net()),
            is(field(ip, "daddr"), Operator::NEQ, net()),
            Statement::Masquerade(None),
        ],
    ));
    if family == NfFamily::IP {
        b.add(rule(
            family,
            "postrouting",
            vec![
                is(meta(MetaKey::Oifname), Operator::EQ, s(bridge)),
                is(
                    field("ip", "saddr"),
                    Operator::EQ,
                    prefix(Ipv4Addr::new(127, 0, 0, 0), 8),
                ),
                Statement::Masquerade(None),
            ],
        ));
    }
    b.add(rule(
        family,
        "postrouting",
        vec![
            is(meta(MetaKey::Oifname), Operator::EQ, s(bridge)),
            is(
                Expression::Named(NamedExpression::CT(CT {
                    key: "status".into(),
                    family: None,
                    dir: None,
                })),
                Operator::IN,
                s("dnat"),
            ),
            is(field(ip, "saddr"), Operator::EQ, net()),
            Statement::Masquerade(None),
        ],
    ));
}

/// The `nft` program: the one on `PATH`, else Debian's `/usr/sbin/nft` (a PATH without the
/// sbin directories, as an unprivileged login's, must not hide it from a root monitor).
fn nft_program() -> std::ffi::OsString {
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("nft"))
            .find(|f| f.is_file())
    });
    on_path
        .or_else(|| {
            ["/usr/sbin/nft", "/sbin/nft"]
                .iter()
                .map(std::path::PathBuf::from)
                .find(|f| f.is_file())
        })
        .map_or_else(|| "nft".into(), |p| p.into_os_string())
}

/// Applies `batch` with `nft`.
pub(crate) fn apply(batch: Batch<'static>) -> Result<(), NetError> {
    let program = nft_program();
    let no_args: [&str; 0] = [];
    nftables::helper::apply_ruleset_with_args(&batch.to_nftables(), Some(&program), no_args)
        .map_err(|e| NetError::Nft {
            detail: format!("{e} (nft is in Debian's nftables package)"),
        })
}
