"""The two ways a pod's sync fails before its container runs, as kubelet reports them:
CreateContainerConfigError (pkg/kubelet/kuberuntime/kuberuntime_container.go ErrCreateContainerConfig)
and FailedMount (pkg/kubelet/events/event.go FailedMountVolume)."""


class ConfigError(Exception):
    """CreateContainerConfigError: the container cannot be created (kubelet retries)."""


class MountError(Exception):
    """FailedMount: a volume cannot be set up (kubelet retries)."""


# ---------------------------------------------------------------------------------------------------
