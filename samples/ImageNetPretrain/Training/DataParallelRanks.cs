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

    /// <summary>One rank a GPU: a plain <c>cuda</c> (not <c>cuda:N</c>) becomes cuda:(local rank) under a launcher.</summary>
    public Device DeviceOfThisRank(Device device, string setting)
    {
        if (group.Size == 1 || device.type != DeviceType.CUDA || setting.Contains(':', StringComparison.Ordinal))
        {
            return device;
        }

        string? local = Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_LOCAL_RANK")
            ?? Environment.GetEnvironmentVariable("SLURM_LOCALID")
            ?? Environment.GetEnvironmentVariable("MPI_LOCALRANKID");
        int localRank = int.TryParse(local, NumberStyles.Integer, CultureInfo.InvariantCulture, out int parsed) ? parsed : group.Rank;
        return new Device(DeviceType.CUDA, localRank % Math.Max(1, (int)cuda.device_count()));
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
