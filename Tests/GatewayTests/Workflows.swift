/// Workflow files the gateway tests serve.
enum TestWorkflows {
    static let all: [String: String] = [
        "hello.workflow.yaml": """
            id: hello
            input:
              type: object
              properties: { name: { type: string, minLength: 1 } }
              required: [name]
            steps:
              - id: greet
                exec: { argv: [echo, "Hello, ${{ input.name }}!"] }
            """,
        "fanout.workflow.yaml": """
            id: fanout
            steps:
              - id: both
                parallel:
                  - id: squares
                    forEach:
                      items: ${{ input.numbers }}
                      concurrency: 3
                      steps:
                        - id: sq
                          exec: { argv: [sh, -c, 'echo $(( $N * $N ))'], env: { N: "${{ item }}" } }
                  - id: label
                    run: echo numbers
              - id: total
                exec:
                  argv: [python3, -c, "import json,sys; print(sum(json.load(sys.stdin)))"]
                  stdin: ${{ toJSON(steps.squares.output) }}
            result: { squares: "${{ steps.squares.output }}", total: "${{ steps.total.output }}", label: "${{ steps.label.output }}" }
            """,
        "flaky.workflow.yaml": """
            id: flaky
            steps:
              - id: attempt
                retry: { max: 3, backoff: 10ms }
                exec:
                  interpreter: python3
                  script: |
                    import os, sys
                    p = "attempts"   # the workspace: every attempt gets a HOME of its own
                    n = int(open(p).read()) + 1 if os.path.exists(p) else 1
                    open(p, "w").write(str(n))
                    sys.exit(0 if n >= 3 else 1)
              - id: branchy
                branch:
                  cases:
                    - if: input.big
                      steps: [{ id: big, run: echo big }]
                  otherwise: [{ id: small, run: echo small }]
              - id: looped
                loop:
                  max: 10
                  until: steps.tick.output >= 4
                  steps: [{ id: tick, run: "echo ${{ iteration }}" }]
              - id: skipped
                if: ${{ input.big == true }}
                run: echo never
            result: { size: "${{ steps.branchy.output }}", ticks: "${{ steps.tick.output }}", skipped: "${{ steps.skipped.status }}" }
            """,
        "fails.workflow.yaml": """
            id: fails
            steps:
              - id: ok
                run: echo fine
              - id: boom
                run: echo "something broke" >&2; exit 3
              - id: after
                run: echo unreachable
            """,
        "slow.workflow.yaml": """
            id: slow
            steps:
              # Each is harmless to run twice: a crash under one runs it again.
              - id: first
                idempotent: true
                run: echo first
              - id: nap
                idempotent: true
                exec: { argv: [sleep, "${{ input.seconds }}"] }
              - id: last
                idempotent: true
                run: echo done
            """,
        "timeout.workflow.yaml": """
            id: timeout
            steps:
              - id: nap
                timeout: 300ms
                exec: { argv: [sleep, "60"] }
            """,
        "badout.workflow.yaml": """
            id: badout
            output: { type: object, required: [count] }
            steps:
              - id: say
                exec: { argv: [echo, '{"other": 1}'] }
            """,
        "escape.workflow.yaml": """
            id: escape
            steps:
              - id: unshare
                exec: { argv: [python3, -c, "import ctypes; ctypes.CDLL(None).unshare(0x10000000)"] }
            """,
        "broken.workflow.yaml": """
            id: broken
            steps:
              - id: a
                exec: { argv: [echo, "${{ steps.nope.output }}"] }
              - id: a
                run: echo dup
              - id: c
                loop: { steps: [] }
              - id: d
                exec: { argv: [echo], colour: red }
            """,
    ]
}
