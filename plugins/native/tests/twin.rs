//! The example plugin, loaded from its `cdylib`, must place exactly like its in-tree twin, the built-in
//! `spread` policy, over many random clusters, workloads and snapshot updates.

use weft_scheduler_api::{Policy, SnapshotUpdate, SplitMix64, WorkloadFootprint};
use weft_scheduler_native::NativePlugin;
use weft_scheduler_testing::{clusters, example_plugin};

#[test]
fn the_native_plugin_places_like_its_in_tree_twin() {
    // SAFETY: the example plugin is built from this repository.
    let plugin = unsafe { NativePlugin::load(example_plugin()) }.unwrap();
    let twin = weft_scheduler_builtin::spread();
    let mut rng = SplitMix64::new(20_240_611);
    let (mut placed, mut unschedulable, mut updates) = (0, 0, 0);
    for round in 0..40 {
        let host_count = 3 + (rng.next_u64() % 60) as usize;
        let snapshot = clusters::snapshot(&mut rng, host_count);
        let workloads = clusters::workloads(&mut rng, 120);
        let seed = rng.next_u64();
        let mut native = plugin.open(snapshot.clone(), seed).unwrap();
        let mut in_tree = twin.open(snapshot, seed).unwrap();
        let mut footprints: Vec<(String, WorkloadFootprint)> = Vec::new();
        for (index, workload) in workloads.iter().enumerate() {
            let expected = in_tree.place(workload);
            assert_eq!(
                native.place(workload),
                expected,
                "round {round}, workload {index}"
            );
            match expected {
                Ok(placement) => {
                    placed += 1;
                    footprints.push((placement.host_id, workload.footprint()));
                }
                Err(_) => unschedulable += 1,
            }
            if index % 10 == 9 {
                let mut batch: Vec<SnapshotUpdate> = (0..3)
                    .map(|offset| {
                        clusters::host_update(&mut rng, in_tree.snapshot(), host_count + index + offset)
                    })
                    .collect();
                if !footprints.is_empty() {
                    let (host_id, footprint) =
                        footprints.swap_remove((rng.next_u64() as usize) % footprints.len());
                    batch.push(SnapshotUpdate::Forget { host_id, footprint });
                }
                updates += batch.len();
                let expected = in_tree.apply(&batch);
                assert_eq!(
                    native.apply(&batch),
                    expected,
                    "round {round}, updates after workload {index}"
                );
            }
        }
        assert_eq!(native.snapshot(), in_tree.snapshot(), "round {round}");
    }
    // The comparison covered both outcomes and a fair amount of churn.
    assert!(
        placed > 2000 && unschedulable > 100 && updates > 1000,
        "{placed} {unschedulable} {updates}"
    );
}
