//! firewalld, when it runs: the pod and service networks are trusted so pods reach PostgreSQL.

use crate::host::Cmd;
use crate::steps::{Action, Context};

pub(super) fn plan(cx: &Context) -> Vec<Action> {
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
            let add = format!("--add-source={cidr}");
            out.push(Action::sync(
                format!("trust {cidr} in firewalld"),
                "pods must reach PostgreSQL",
                move |cx| {
                    cx.host.runner().run(&Cmd::new("firewall-cmd").args([
                        "--permanent",
                        "--zone=trusted",
                        &add,
                    ]))?;
                    Ok(())
                },
            ));
        }
    }
    if !out.is_empty() {
        out.push(Action::sync(
            "reload firewalld",
            "its zones changed",
            |cx| {
                cx.host
                    .runner()
                    .run(&Cmd::new("firewall-cmd").arg("--reload"))?;
                Ok(())
            },
        ));
    }
    out
}
