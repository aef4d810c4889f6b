package io.lora4j.cli;

import java.util.Collection;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/** The subcommands of {@code lora4j}, in help order. To add one, register it in {@link #defaults()}. */
public final class CommandRegistry {
    private final Map<String, Command> commands = new LinkedHashMap<>();

    /** Every implemented command. */
    public static CommandRegistry defaults() {
        return new CommandRegistry()
                .register(new DemoCommand())
                .register(new QuantizeCommand())
                .register(new InspectCommand())
                .register(new GenerateCommand())
                .register(new DataCommand())
                .register(new EvalCommand())
                .register(new TrainCommand())
                .register(new VerifyCommand())
                .register(new MergeCommand())
                .register(new ExportCommand())
                .register(new ScaleCommand())
                .register(new DoctorCommand())
                .register(new PlanCommand());
    }

    public CommandRegistry register(Command c) {
        if (commands.putIfAbsent(c.name(), c) != null) throw new IllegalArgumentException("command " + c.name() + " registered twice");
        return this;
    }

    /** The command named {@code name}, or null. */
    public Command get(String name) {
        return commands.get(name);
    }

    public Collection<Command> all() {
        return Collections.unmodifiableCollection(commands.values());
    }
}
