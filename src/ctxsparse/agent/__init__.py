"""Agentic coding under sparse decoding, on mini-swe-agent.

harness_model.SparseHarnessModel (mini-swe-agent Model; kv_conversation.KVConversation keeps the KV cache across
turns), environment.SandboxEnvironment (mini-swe-agent Environment; sandbox.run_command runs each command),
coding_task.load_tasks (the shipped tasks in task_repos/), episode.run_episode, runner.run_plan,
episode_store.EpisodeStore, swebench.run_swebench.
"""
