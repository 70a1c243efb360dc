"""Empty on purpose: lmms-eval's legacy LMMS_EVAL_PLUGINS route requires a `<plugin>.tasks` package and adds its
folder to the task search path. The toy task lives in tools/lmms/tasks (pass `--include_path tools/lmms/tasks`)."""
