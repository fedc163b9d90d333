using System.Globalization;
using Hcsc.Core.Distributed;
using Hcsc.Core.Options;
using Hcsc.Models;
using Hcsc.Models.Distributed;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Samples.ImageNetPretrain.Training;

/// <summary>
/// What the training loop asks of the ranks of a data-parallel run (docs/distributed.md): the preconditions, this rank's
/// device and batch-norm splits, identical starting weights, and values agreed over the ranks. With one rank every
/// answer is the single process's.
/// </summary>
internal sealed class DataParallelRanks(ICollectives group)
{
    /// <summary>The data-parallel preconditions; none with one process.</summary>
    public List<string> Problems(HcscOptions options)
    {
        var problems = new List<string>();
        int n = group.Size;
        if (n == 1)
        {
            return problems;
        }

        int batch = options.Training.BatchSize, splits = options.Model.BatchNormSplits;
        if (batch % n != 0)
        {
            problems.Add($"Training:BatchSize ({batch}) is the global batch and must be a multiple of the number of ranks ({n}): each rank takes BatchSize / {n} images.");
        }

        if (splits > 1 && splits % n != 0)
        {
            problems.Add(
                $"Model:BatchNormSplits ({splits}) must be 1 or a multiple of the number of ranks ({n}) with --distributed mpi: the key batch is shuffled over the ranks " +
                $"and each rank's batch norm takes {splits} / {n} of the splits (MoCo's shuffle BN: BatchNormSplits = {n}). Set --set Model:BatchNormSplits={n}.");
        }

        return problems;
    }

    /// <summary>MoCo's shuffle BN over the ranks: the key batch is shuffled across them when the global batch has BN splits.</summary>
    public bool ShuffleKeysAcrossRanks(ModelOptions model) => group.Size > 1 && model.BatchNormSplits > 1;

    /// <summary>This rank's model options: the batch-norm splits of the global batch divided over the ranks.</summary>
    public ModelOptions ModelOptionsOfThisRank(ModelOptions model)
    {
        if (group.Size == 1)
        {
            return model;
        }

        var rank = model.Clone();
        rank.BatchNormSplits = Math.Max(1, model.BatchNormSplits / group.Size);
        return rank;
    }

    /// <summary>
    /// One rank a GPU (<see cref="GpuBinding"/>): under a launcher, <c>cuda</c> becomes cuda:(local rank); a layout that
    /// would put two ranks of one machine on one GPU (<c>cuda:N</c> on every rank, more ranks than GPUs) is refused on
    /// every rank with what to do. Collective for CUDA devices.
    /// </summary>
    public Device DeviceOfThisRank(Device device, string setting)
    {
        if (group.Size == 1 || device.type != DeviceType.CUDA)
        {
            return device;
        }

        Span<long> mine = [GpuBinding.NodeIdentity(), GpuBinding.LauncherLocalRank(), cuda.device_count()];
        var all = new long[3 * group.Size];
        group.AllGather<long>(mine, all);
        var ranks = Enumerable.Range(0, group.Size).ToArray();
        int[] devices = GpuBinding.Assign(
            ranks.Select(r => all[3 * r]).ToArray(),
            ranks.Select(r => (int)all[(3 * r) + 1]).ToArray(),
            ranks.Select(r => (int)all[(3 * r) + 2]).ToArray(),
            setting.Contains(':', StringComparison.Ordinal) ? device.index : null);
        return new Device(DeviceType.CUDA, devices[group.Rank]);
    }

    /// <summary>Rank 0's weights and buffers on every rank, then checked identical.</summary>
    public void StartIdentical(HcscModel model)
    {
        if (group.Size == 1)
        {
            return;
        }

        foreach (var (_, tensor) in model.state_dict())
        {
            group.Broadcast(tensor, root: 0);
        }

        ParameterChecksum.VerifyIdentical(model, group);
    }

    /// <summary>The mean of <paramref name="value"/> over the ranks.</summary>
    public double Mean(double value)
    {
        if (group.Size == 1)
        {
            return value;
        }

        Span<double> sum = [value];
        group.AllReduceSum(sum);
        return sum[0] / group.Size;
    }

    /// <summary>
    /// The cores this process may use for loading data: the processor count divided among the ranks a launcher
    /// started on this machine (OMPI_COMM_WORLD_LOCAL_SIZE, SLURM_NTASKS_PER_NODE, MPI_LOCALNRANKS), at least 1.
    /// </summary>
    public static int CoresOfThisRank()
    {
        int ranksHere = 1;
        foreach (string name in new[] { "OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE", "MPI_LOCALNRANKS" })
        {
            if (int.TryParse(Environment.GetEnvironmentVariable(name), NumberStyles.Integer, CultureInfo.InvariantCulture, out int value) && value > 0)
            {
                ranksHere = value;
                break;
            }
        }

        return Math.Max(1, Environment.ProcessorCount / ranksHere);
    }

    /// <summary>
    /// What the ranks agree on after a step, in one collective: the largest stop exit code any rank was given (0: none)
    /// and whether any rank was asked for a checkpoint.
    /// </summary>
    public (int ExitCode, bool Checkpoint) AgreeAfterStep(int exitCode, bool checkpoint)
    {
        if (group.Size == 1)
        {
            return (exitCode, checkpoint);
        }

        var all = new int[2 * group.Size];
        group.AllGather<int>([exitCode, checkpoint ? 1 : 0], all);
        return (Enumerable.Range(0, group.Size).Max(r => all[2 * r]), Enumerable.Range(0, group.Size).Any(r => all[(2 * r) + 1] != 0));
    }

    /// <summary>True on every rank when <paramref name="flag"/> is true on any.</summary>
    public bool Any(bool flag)
    {
        if (group.Size == 1)
        {
            return flag;
        }

        Span<long> count = [flag ? 1 : 0];
        group.AllReduceSum(count);
        return count[0] > 0;
    }
}
