using System.Runtime.InteropServices;

namespace Hcsc.Runtime;

/// <summary>
/// libtorch's OpenMP worker threads busy-wait between parallel regions by default. On a machine
/// with few cores that also runs data-loading threads, the spinning threads take the cores the
/// loaders need: the sample's default run was about 10× slower on 2 cores. Passive waiting
/// (<c>OMP_WAIT_POLICY=PASSIVE</c>) avoids it.
/// </summary>
public static partial class OpenMpWaitPolicy
{
    /// <summary>
    /// Sets <c>OMP_WAIT_POLICY=PASSIVE</c> in the native environment unless a policy is already set.
    /// Call it first thing in <c>Main</c>, before any TorchSharp call: OpenMP reads the variable once,
    /// when libtorch loads. It sets the variable through libc because .NET keeps its own copy of the
    /// environment, which native code does not see. Does nothing on Windows.
    /// </summary>
    /// <returns>True when the variable was set by this call.</returns>
    public static bool PreferPassive()
    {
        if (OperatingSystem.IsWindows() || Environment.GetEnvironmentVariable("OMP_WAIT_POLICY") is not null)
        {
            return false;
        }

        Environment.SetEnvironmentVariable("OMP_WAIT_POLICY", "PASSIVE");
        return setenv("OMP_WAIT_POLICY", "PASSIVE", 0) == 0;
    }

    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int setenv(string name, string value, int overwrite);
}
