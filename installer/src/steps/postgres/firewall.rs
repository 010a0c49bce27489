//! firewalld, when it runs: the pod and service networks are trusted so pods reach PostgreSQL.

use super::Op;
use crate::action::Planned;
use crate::context::Context;
use crate::error::Result;
use crate::host::Cmd;

pub(super) fn plan(cx: &Context) -> Vec<Planned<Op>> {
    let runner = cx.host.runner();
    let mut out = Vec::new();
    for cidr in [&cx.config.k3s.cluster_cidr, &cx.config.k3s.service_cidr] {
        let trusted = runner
            .output(&Cmd::new("firewall-cmd").args([
                "--permanent",
                "--zone=trusted",
                &format!("--query-source={cidr}"),
            ]))
            .is_ok_and(|o| o.success());
        if !trusted {
            let cidr = cidr.to_string();
            out.push(Planned::new(
                Op::TrustSource { cidr },
                "pods must reach PostgreSQL",
            ));
        }
    }
    if !out.is_empty() {
        out.push(Planned::new(Op::ReloadFirewall, "its zones changed"));
    }
    out
}

pub(super) fn trust(cx: &Context, cidr: &str) -> Result<()> {
    let add = format!("--add-source={cidr}");
    cx.host.runner().run(&Cmd::new("firewall-cmd").args([
        "--permanent",
        "--zone=trusted",
        &add,
    ]))?;
    Ok(())
}

pub(super) fn reload(cx: &Context) -> Result<()> {
    cx.host
        .runner()
        .run(&Cmd::new("firewall-cmd").arg("--reload"))?;
    Ok(())
}
