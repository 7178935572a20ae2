//! The mesh users build (README): the public side of a [`Topology`] and
//! one `relay-node run` per site, each set up with `init --join TICKET`
//! from the relay and started with nothing else (ticket-only), or also
//! with the second observer as `--peer` (two observers).

use std::path::Path;
use std::time::Duration;

use super::node::{init, is_connected_via, LabNode};
use super::public::{PublicSide, Topology};
use super::topology::Lab;

/// The public nodes and one node per site.
#[derive(Debug)]
pub struct Mesh {
    /// The relay (and the observer).
    pub public: PublicSide,
    /// The site nodes, site 0 first.
    pub nodes: Vec<LabNode>,
}

impl Mesh {
    /// Starts the public side of `topology`, then a node on each of the
    /// first `extra.len()` sites of `lab` (data dir `dir/n<i>`, listening
    /// on `0.0.0.0:port`, with `extra[i]` appended to its `run`
    /// arguments), and waits until every site node is connected directly
    /// to every public node.
    pub fn start(
        lab: &Lab,
        bin: &Path,
        dir: &Path,
        topology: Topology,
        port: u16,
        extra: &[&[&str]],
        timeout: Duration,
    ) -> Result<Self, String> {
        let public = PublicSide::start(lab, bin, dir, topology, port, timeout)?;
        let mut nodes = Vec::with_capacity(extra.len());
        for (i, more) in extra.iter().enumerate() {
            let site = lab
                .site(i)
                .ok_or_else(|| format!("the lab has no site {i}"))?;
            let data = dir.join(format!("n{i}"));
            init(bin, &data, Some(&public.ticket))?;
            let mut args = vec!["--listen".to_string(), format!("0.0.0.0:{port}")];
            args.extend(public.site_args());
            args.extend(more.iter().map(|a| a.to_string()));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            nodes.push(LabNode::start(bin, &site.host, &data, &args, timeout)?);
        }
        for node in &nodes {
            for p in public.nodes() {
                node.wait_peer(&p.id, timeout, |e| is_connected_via(e, "direct"))
                    .ok_or_else(|| {
                        format!("{} never connected to {}:\n{}", node.id, p.id, node.log())
                    })?;
            }
        }
        Ok(Self { public, nodes })
    }
}
