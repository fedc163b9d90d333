namespace Hcsc.Samples.ImageNetPretrain.Training;

/// <summary>
/// Which GPU each rank of a data-parallel run uses: one rank a GPU. TorchSharp has no <c>set_device</c>, so a rank that
/// is not told otherwise would use GPU 0; here local rank r of a node takes <c>cuda:r</c>, and two ranks of one node on
/// one GPU are refused before anything is allocated.
/// </summary>
public static class GpuBinding
{
    /// <summary>
    /// The CUDA device index of every rank.
    /// </summary>
    /// <param name="nodes">A node identity per rank (ranks with equal values share a machine), in rank order.</param>
    /// <param name="launcherLocalRanks">The local rank a launcher gave each rank (OMPI_COMM_WORLD_LOCAL_RANK, SLURM_LOCALID, MPI_LOCALRANKID), or -1 where none did.</param>
    /// <param name="deviceCounts">The CUDA devices each rank sees.</param>
    /// <param name="fixedIndex">The N of a <c>--device cuda:N</c> every rank was given, or null for <c>cuda</c>.</param>
    /// <returns>Rank r's device index.</returns>
    /// <exception cref="InvalidOperationException">A rank would have no GPU of its own; the message says what to do.</exception>
    public static int[] Assign(IReadOnlyList<long> nodes, IReadOnlyList<int> launcherLocalRanks, IReadOnlyList<int> deviceCounts, int? fixedIndex)
    {
        int size = nodes.Count;
        var local = new int[size];
        for (int rank = 0; rank < size; rank++)
        {
            // Without a launcher's word, a rank's place among the ranks of its node (as an MPI shared-memory split gives).
            local[rank] = launcherLocalRanks[rank] >= 0
                ? launcherLocalRanks[rank]
                : Enumerable.Range(0, rank).Count(other => nodes[other] == nodes[rank]);
        }

        var devices = new int[size];
        for (int rank = 0; rank < size; rank++)
        {
            devices[rank] = fixedIndex ?? local[rank];
            if (devices[rank] >= deviceCounts[rank])
            {
                int ranksOnNode = nodes.Count(node => node == nodes[rank]);
                throw new InvalidOperationException(
                    $"Rank {rank} would use cuda:{devices[rank]}, but its machine shows {deviceCounts[rank]} CUDA device(s) and runs {ranksOnNode} rank(s). " +
                    $"Start at most {deviceCounts[rank]} rank(s) per machine (mpirun -npernode {deviceCounts[rank]}, srun --ntasks-per-node={deviceCounts[rank]}), one a GPU.");
            }
        }

        for (int rank = 0; rank < size; rank++)
        {
            for (int other = 0; other < rank; other++)
            {
                if (nodes[other] == nodes[rank] && devices[other] == devices[rank])
                {
                    string fix = fixedIndex is null
                        ? "Check that the launcher gives each rank of a machine its own local rank."
                        : $"Use --device cuda (not cuda:{fixedIndex}): local rank r then takes cuda:r.";
                    throw new InvalidOperationException(
                        $"Ranks {other} and {rank} run on one machine and would both use cuda:{devices[rank]}; a data-parallel run needs one GPU a rank. {fix}");
                }
            }
        }

        return devices;
    }

    /// <summary>The local rank a launcher set for this process, or -1.</summary>
    public static int LauncherLocalRank()
    {
        foreach (string name in new[] { "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID", "LOCAL_RANK" })
        {
            if (int.TryParse(Environment.GetEnvironmentVariable(name), System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out int value) && value >= 0)
            {
                return value;
            }
        }

        return -1;
    }

    /// <summary>A 64-bit identity of this machine (FNV-1a of its host name): equal on the ranks that share it.</summary>
    public static long NodeIdentity()
    {
        ulong hash = 14695981039346656037UL;
        foreach (char c in Environment.MachineName)
        {
            hash = (hash ^ c) * 1099511628211UL;
        }

        return unchecked((long)hash);
    }
}
