//! `berth registry serve` driven by clients we did not write (skopeo, podman, docker through
//! dockerd) and by berth's own client: images go in and come out with the same digests.

mod common;

use common::host::Host;
use common::registry_server::BerthRegistry;

#[test]
fn berth_push_then_pull_round_trip() {
    let registry = BerthRegistry::start();
    let host = Host::new();
    let berth = &host.berth;
    let image = registry.image("team/rt:1");
    berth.ok(&["tag", "busybox:latest", &image]);
    let id = berth.image_id(&image);
    berth.ok(&["push", &image]);
    berth.ok(&["rmi", &image, "busybox:latest"]);
    berth.ok(&["pull", &image]);
    assert_eq!(berth.image_id(&image), id);
    assert!(registry.check().is_ok(), "{:?}", registry.check());
}
