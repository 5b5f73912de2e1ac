// The HELP line of each metric, by its name without the driftwatch_ prefix.
// A name missing here still works; its help is the name in words.

const HELP: Record<string, string> = {
  // pipeline
  events_decoded_total: 'Records decoded from the kernel ring buffer.',
  events_total: 'Decoded events by kind.',
  decode_errors_total: 'Malformed kernel records dropped by the decoder.',
  host_events_dropped_total: 'Events from host processes dropped (includeHost is off).',
  pipeline_errors_total: 'Batches or findings a pipeline stage failed on and dropped.',
  sink_errors_total: 'Findings a sink failed to write.',
  reloads_total: 'Signature and policy reloads (SIGHUP).',
  enrichment_incomplete_total: 'Events whose container metadata could not be completed.',
  file_hash_unavailable_total: 'Findings without a file hash, by reason.',
  same_as_image_unavailable_total: 'Findings where the image copy of the file could not be compared, by reason.',
  script_layer_unknown_total: 'Scripts whose overlay layer could not be told.',
  hooks_unavailable_total: 'Optional kernel hooks that did not load or attach, by program.',
  heap_collections_total: 'Full heap collections the sensor started itself, by reason (quiet: after a burst; old_growth: during one).',
  finding_latency_seconds: 'Time from the exec in the kernel to its finding reaching the sinks.',
  // signatures and policy
  findings_total: 'Findings made, by signature.',
  signature_errors_total: 'Signature calls that threw or made an invalid finding, by signature.',
  signatures_disabled_total: 'Signatures disabled after failing, by signature.',
  signature_logs_suppressed_total: 'Signature log lines over the per-minute limit, by signature.',
  policy_excepted_total: 'Findings dropped by a policy exception, by signature and rule index.',
  findings_action_total: 'Findings reported, by signature and what the kernel did (alert, prevented, would_prevent).',
  findings_folded_total: 'Repeated findings folded into a dedup summary, by signature.',
  signature_stopped_total: 'Custom signatures stopped, by signature and reason (time_budget, memory, crashed, load).',
  signature_events_dropped_total: 'Events a custom signature did not get: its worker was stopped or its backlog full.',
  // package managers
  package_windows_total: 'Package-manager runs that opened a window for their container.',
  package_windows_open: 'Package-manager windows open now.',
  package_windows_refused_total: 'Package-manager execs that opened no window, by reason.',
  package_windows_dropped_total: 'Package-manager windows dropped for the bounds, by reason.',
  // prevention
  prevention_containers: 'Containers the prevention maps know.',
  prevention_containers_in_scope: 'Containers in which drift is prevented.',
  prevention_map_errors_total: 'Failed updates of the prevention maps.',
  // export
  export_spool_bytes: 'Bytes of findings in the spool, not yet confirmed by the backend.',
  export_latency_seconds: 'Time from sending a batch of findings to the backend to its answer.',
  export_spooled_total: 'Findings written to the export spool.',
  export_sent_total: 'Findings the backend confirmed.',
  export_stored_total: 'Findings the backend stored as new.',
  export_duplicates_total: 'Findings the backend already had.',
  export_retries_total: 'Export attempts that failed and will be retried.',
  export_rejected_total: 'Findings the backend rejected for good.',
  export_dropped_total: 'Findings dropped from a full spool.',
  export_spool_corrupt_total: 'Spool records skipped as corrupt.',
  // enrichment
  enrichment_inflight: 'Events waiting for container metadata or file facts.',
  enrichment_cache_entries: 'Containers in the metadata cache.',
  enrichment_cache_hits_total: 'Metadata lookups answered from the cache.',
  enrichment_cache_misses_total: 'Metadata lookups not in the cache.',
  enrichment_negative_hits_total: 'Lookups answered by a cached "no metadata".',
  enrichment_lookups_total: 'Metadata lookups sent to the container runtime.',
  enrichment_lookup_errors_total: 'Metadata lookups that failed.',
  enrichment_wait_timeouts_total: 'Events that stopped waiting for metadata.',
  enrichment_queue_rejected_total: 'Lookups refused by a full queue.',
  enrichment_evicted_dead_total: 'Cache entries evicted for containers that are gone.',
  // self-test
  selftest: 'Self-test result by check: 1 pass, 0 fail.',
  selftest_runs_total: 'Self-test runs.',
  selftest_events_total: 'Events of the self-test, kept from signatures and sinks.',
  // kernel
  kernel_exec_seen_total: 'Execs the kernel program saw.',
  kernel_exec_emitted_total: 'Execs sent to user space.',
  kernel_exec_filtered_total: 'Execs not sent to user space: no drift candidate, or the sensor\'s own.',
  kernel_ringbuf_full_total: 'Records lost to a full ring buffer.',
  kernel_scratch_miss_total: 'Events lost: the per-CPU scratch buffer was not available.',
  kernel_ovl_unresolved_total: 'Overlay execs whose layer the kernel could not tell.',
  kernel_path_truncated_total: 'Paths cut at the kernel buffer size.',
  kernel_cgroup_v1_fallback_total: 'Events whose cgroup was read from the cgroup v1 hierarchy.',
  kernel_mmap_exec_seen_total: 'Executable mappings the kernel program saw.',
  kernel_mmap_exec_emitted_total: 'Executable mappings sent to user space.',
  kernel_ovl_nested_total: 'Execs through an overlay mounted inside a container.',
  kernel_ovl_unfollowed_total: 'Nested-overlay execs not followed to the file behind them.',
  kernel_prevented_total: 'Execs killed with SIGKILL at sched_process_exec.',
  kernel_denied_total: 'Execs refused with EPERM at bprm_check.',
  kernel_would_prevent_total: 'Execs a dry run would have stopped.',
  kernel_prevent_excepted_total: 'Execs let through by a prevention exception.',
  kernel_prevent_path_long_total: 'Execs judged without exceptions: path too long or too deep.',
  kernel_prevent_failed_total: 'Execs prevention meant to stop, but the kill signal was refused: they ran.',
  kernel_prevent_script_unseen_total: '#! scripts prevention could not find at exec: judged by their interpreter.',
  kernel_script_unseen_total: '#! execs whose script file the kernel side could not find.',
  kernel_watch_emitted_total: 'Image execs sent to user space because exec_watch matched (package managers).',
  kernel_watch_inline_total: 'Watched interpreter execs dropped: inline code (sh -c).',
  kernel_watch_no_operand_total: 'Watched interpreter execs dropped: no operand (REPL, stdin).',
  kernel_records_delivered_total: 'Ring-buffer records delivered to the pipeline.',
  kernel_records_pending: '1 while the ring buffer holds records not yet read.',
  bpf_stats_enabled: 'kernel.bpf_stats_enabled: 1 when BPF program run time is counted.',
  bpf_program_run_time_ns_total: 'Time spent in each BPF program (needs kernel.bpf_stats_enabled=1).',
  bpf_program_runs_total: 'Runs of each BPF program (needs kernel.bpf_stats_enabled=1).',
};

export function helpFor(name: string): string {
  const known = HELP[name];
  if (known) return known;
  // Integrations repeat the export family under their own prefix (falco_http_sent_total).
  const exported = /^(.+?)_(spooled_total|sent_total|stored_total|duplicates_total|retries_total|rejected_total|dropped_total|spool_corrupt_total|spool_bytes|latency_seconds)$/.exec(name);
  const exportHelp = exported && HELP[`export_${exported[2]}`];
  if (exportHelp) return `${exported[1]}: ${exportHelp}`;
  // Names from before the counters were typed, kept for existing dashboards.
  if (HELP[`${name}_total`]) return `Deprecated gauge: the counter driftwatch_${name}_total.`;
  return name.replace(/_/g, ' ');
}
