#!/bin/sh
# Starts `serpent serve` with settings from SERPENT_* variables; flags given to the container
# come last and win. exec, so serpent is PID 1's child-free replacement and gets SIGTERM itself.
set -e
set -- --model "${SERPENT_MODEL}" --host "${SERPENT_HOST:-0.0.0.0}" --port "${SERPENT_PORT:-8000}" \
    ${SERPENT_SERVED_MODEL_NAME:+--served-model-name "$SERPENT_SERVED_MODEL_NAME"} \
    ${SERPENT_MAX_NUM_SEQS:+--max-num-seqs "$SERPENT_MAX_NUM_SEQS"} \
    ${SERPENT_MAX_MODEL_LEN:+--max-model-len "$SERPENT_MAX_MODEL_LEN"} \
    ${SERPENT_GPU_MEMORY_UTILIZATION:+--gpu-memory-utilization "$SERPENT_GPU_MEMORY_UTILIZATION"} \
    ${SERPENT_TIMEOUT:+--timeout "$SERPENT_TIMEOUT"} \
    ${SERPENT_MAX_CONNECTIONS_PER_IP:+--max-connections-per-ip "$SERPENT_MAX_CONNECTIONS_PER_IP"} \
    ${SERPENT_ALLOWED_ORIGINS:+--allowed-origins "$SERPENT_ALLOWED_ORIGINS"} \
    "$@"
exec serpent serve "$@"
