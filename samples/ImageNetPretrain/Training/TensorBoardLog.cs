using System.Text.Json;
using TorchSharp;

namespace Hcsc.Samples.ImageNetPretrain.Training;

/// <summary>
/// TensorBoard event files in <c>EXP_DIR/tensorboard</c> (TorchSharp's <c>SummaryWriter</c>): the loss of every step as
/// <c>step/loss</c>, and every number of an epoch's metrics record as <c>epoch/NAME</c> (a list per level as
/// <c>epoch/NAME/L</c>). View with <c>tensorboard --logdir EXP_DIR/tensorboard</c>.
/// </summary>
public sealed class TensorBoardLog
{
    private readonly TorchSharp.Modules.SummaryWriter _writer;

    /// <summary>Creates the folder and an event file in it.</summary>
    public TensorBoardLog(string directory)
    {
        _writer = torch.utils.tensorboard.SummaryWriter(directory);
    }

    /// <summary>The folder of the event files.</summary>
    public string Directory => _writer.LogDir;

    /// <summary>Records one training step's loss.</summary>
    public void Step(int globalStep, double loss) => _writer.add_scalar("step/loss", (float)loss, globalStep);

    /// <summary>Records the numbers of an epoch's metrics record (after epoch <paramref name="completedEpochs"/>).</summary>
    public void Epoch(int completedEpochs, EpochRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        foreach (var (name, value) in record.Scalars())
        {
            _writer.add_scalar($"epoch/{name}", (float)value, completedEpochs);
        }
    }
}
