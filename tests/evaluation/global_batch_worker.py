"""One process of tests/evaluation/test_global_batch.py: join ``jax.distributed``, evaluate a
batch sharded across every process's devices, and compare with the same call on one device.

    python global_batch_worker.py PROCESS_ID NUM_PROCESSES PORT
"""
import sys

import jax
import jax.numpy as jnp
import numpy as np


def main(process_id: int, n: int, port: int) -> None:
    jax.distributed.initialize(f"127.0.0.1:{port}", n, process_id, initialization_timeout=120)
    import jaxattr as ja
    from jax.experimental import multihost_utils
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    def apply_fn(w, x):
        return jnp.tanh(x.reshape(len(x), -1) @ w[0]) @ w[1]

    k = jax.random.split(jax.random.key(1), 4)
    batch = 4 * n
    w = (jax.random.normal(k[0], (4 * 4 * 3, 8)), jax.random.normal(k[1], (8, 3)))
    x = np.asarray(jax.random.uniform(k[2], (batch, 4, 4, 3)))
    relevance = np.asarray(jax.random.normal(k[3], x.shape))
    options = dict(region=2, steps=4, key=jax.random.key(0), progress=False)
    explanations = {"given": relevance, "gradient": ja.explain(apply_fn, ja.Gradient())}

    # one device: the whole batch in this process
    curve = np.asarray(ja.evaluation.perturbation_curve(apply_fn, w, x, None, relevance, **options))
    table = ja.evaluation.evaluate(apply_fn, w, x, None, explanations, **options)

    # the global batch: this process holds rows [i·4, i·4 + 4)
    sharding = NamedSharding(Mesh(np.asarray(jax.devices()), ("batch",)), PartitionSpec("batch"))
    rows = slice(process_id * 4, process_id * 4 + 4)
    gx = jax.make_array_from_process_local_data(sharding, x[rows])
    grel = jax.make_array_from_process_local_data(sharding, relevance[rows])
    assert not gx.is_fully_addressable and gx.shape == x.shape
    for extra in ({}, {"chunk_size": 6}, {"shard": True}):
        got = ja.evaluation.perturbation_curve(apply_fn, w, gx, None, grel, **options, **extra)
        got = np.asarray(multihost_utils.process_allgather(got, tiled=True))
        np.testing.assert_allclose(got, curve, rtol=0, atol=1e-6, err_msg=str(extra))
    got = ja.evaluation.evaluate(apply_fn, w, gx, None, {"given": grel, "gradient": explanations["gradient"]},
                                 **options)
    assert list(got.columns) == list(table.columns) and (got["method"] == table["method"]).all()
    numbers = [c for c in table.columns if c != "method"]
    np.testing.assert_allclose(got[numbers].to_numpy(float), table[numbers].to_numpy(float), rtol=0, atol=1e-6)
    print(f"process {process_id}: global batch == one device, max |diff| "
          f"{np.abs(got[numbers].to_numpy(float) - table[numbers].to_numpy(float)).max():.1e}", flush=True)


if __name__ == "__main__":
    main(*map(int, sys.argv[1:4]))
