namespace Hcsc.Benchmarks;

/// <summary>A comparison benchmark: runs a subject and its baseline in one process and prints both figures and their ratio.</summary>
public interface IBenchmark
{
    /// <summary>Name used on the command line.</summary>
    string Name { get; }

    /// <summary>One line saying what is measured against what.</summary>
    string Description { get; }

    /// <summary>Runs the benchmark with the remaining command-line arguments.</summary>
    int Run(string[] args);
}
