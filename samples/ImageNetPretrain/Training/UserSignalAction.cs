namespace Hcsc.Samples.ImageNetPretrain.Training;

/// <summary>What SIGUSR1 and SIGUSR2 do to a run (<c>--on-signal</c>; <see cref="GracefulStop"/>).</summary>
public enum UserSignalAction
{
    /// <summary>Write a checkpoint at the end of the current step and go on.</summary>
    Checkpoint,

    /// <summary>Write a checkpoint at the end of the current step and exit with <see cref="GracefulStop.RequeueExitCode"/>.</summary>
    Requeue,
}
